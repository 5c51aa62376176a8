"""The usage flush's read of Redis: every counter (`export`) against the counters changed
since the last flush (`export_touched`), side by side in one run.

Seeds a redis-server (no persistence, 127.0.0.1) with N counters, as a day of end users
leaves them, settles K of them as one flush interval's traffic would, then times each
read. Alternates the two reads ``--repeats`` times (each touched read preceded by the same
K settles) and prints the medians and their ratio.

    .venv/bin/python bench/redis_flush.py [--counters 300000] [--touched 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests.support
from tests.support.redis_server import start_redis
from tollway.governance.counters.base import CounterState, SettleOp
from tollway.governance.counters.redis import RedisCounterStore

NOW = 1_800_000_000_000
MINUTE = 60_000


async def measure(url: str, counters: int, touched: int, repeats: int) -> dict[str, object]:
    store = RedisCounterStore(url, timeout_ms=5000)
    try:
        names = [f"b:eu{i}:user-{i}" for i in range(counters)]
        for start in range(0, counters, 20_000):
            await store.load({name: CounterState(i, NOW) for i, name in enumerate(names[start:start + 20_000])})
        await store.export_touched()
        settles = [SettleOp(name, 0, 1, NOW - MINUTE + 1, NOW, MINUTE) for name in names[:: max(1, counters // touched)]]
        full, incremental = [], []
        for _ in range(repeats):
            began = time.perf_counter()
            exported = await store.export()
            full.append(time.perf_counter() - began)
            for at in range(0, len(settles), 500):
                await store.settle(settles[at:at + 500])
            began = time.perf_counter()
            states, _ = await store.export_touched()
            incremental.append(time.perf_counter() - began)
        assert len(exported) >= counters and len(states) == len(settles), (len(exported), len(states))
        full_ms, touched_ms = statistics.median(full) * 1000, statistics.median(incremental) * 1000
        return {"counters": counters, "touched": len(settles), "export_ms": round(full_ms, 1),
                "export_touched_ms": round(touched_ms, 2), "ratio": round(full_ms / touched_ms, 1)}
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counters", type=int, default=300_000)
    parser.add_argument("--touched", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    server = start_redis()
    try:
        result = asyncio.run(measure(server.url, args.counters, args.touched, args.repeats))
    finally:
        server.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
