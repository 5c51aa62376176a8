"""What configuration churn costs each gateway's event loop, in CPU time — a measure a
shared, loaded machine leaves steady, where latency mostly shows the wait for a core.

    .venv/bin/python bench/control_plane_steps.py --keys 10000 --database postgresql
    .venv/bin/python bench/control_plane_steps.py --keys 1000 --database sqlite --seconds 3

Two real gateways (`tests.support.gateway`, each uvicorn on its own thread and loop) on
one database with N seeded keys (`control_plane.seed`), the mock upstream a child
process. On each gateway's loop a heartbeat wakes every millisecond and notes the CPU
time its thread used since the last beat: the longest such gap is the longest the loop
was held by its own work (requests, applying changes, garbage collection), whatever the
machine's load. Per node, an idle phase and a churn phase (keys created and deleted
through node A's API at ``--churn`` per second, `control_plane.churn`), both under the
same proxy load on each node:

- ``cpu_ms_per_s``: CPU the loop's thread used per second; the difference over the
  changes made is ``cpu_ms_per_change`` (node A: serving the API call and applying it;
  node B: applying it only);
- ``hold_ms``: the longest CPU time between two beats, and the 99.9th percentile and
  count over 2 ms (the loop could not answer a request meanwhile).

Results are printed and written to bench/results/control_plane_steps.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from control_plane import ADMIN, KEYS_API, ROOT, churn, gateway_config, key_value, proxy_load, seed
from loadgen import free_port, wait_http

sys.path.insert(0, str(ROOT))
from tests.support.gateway import RunningGateway, start_gateway
from tests.support.postgres import start_postgres

RESULTS = ROOT / "bench" / "results" / "control_plane_steps.json"
BEAT_S = 0.001


class LoopMeter:
    """A heartbeat on one loop noting its thread's CPU time between beats (ms)."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.cpu_s = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        last = time.thread_time()
        while True:
            await asyncio.sleep(BEAT_S)
            now = time.thread_time()
            self.gaps.append((now - last) * 1000)
            last = now

    async def take(self) -> tuple[list[float], float]:
        """The gaps since the last take, and this thread's CPU seconds now."""
        gaps, self.gaps = self.gaps, []
        return gaps, time.thread_time()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class GcTimer:
    """The collector's pauses by generation (process-wide: every thread's collections)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append((time.perf_counter() - self._started) * 1000)

    def take(self) -> dict:
        taken = {str(gen): {"n": len(p), "max_ms": round(max(p, default=0), 1), "total_ms": round(sum(p), 1)}
                 for gen, p in self.pauses.items()}
        self.pauses = {0: [], 1: [], 2: []}
        return taken | {"tracked": len(gc.get_objects()), "frozen": gc.get_freeze_count()}


GC = GcTimer()


def holds(gaps: list[float], cpu_s: float, seconds: float) -> dict:
    ordered = sorted(gaps)
    at = ordered[min(len(ordered) - 1, int(len(ordered) * 0.999))] if ordered else 0.0
    return {"cpu_ms_per_s": round(cpu_s * 1000 / seconds, 1), "hold_max_ms": round(ordered[-1] if ordered else 0, 2),
            "hold_p999_ms": round(at, 2), "holds_over_2ms": sum(gap > 2 for gap in gaps), "beats": len(gaps)}


async def phase(session: aiohttp.ClientSession, nodes: dict[str, RunningGateway], meters: dict[str, LoopMeter],
                args: argparse.Namespace, churning: bool) -> dict:
    """Proxy load on every node for ``args.seconds`` (and churn through node A when
    ``churning``); per node its loop's CPU and holds."""
    value = key_value(args.keys // 2)
    await asyncio.gather(*(proxy_load(session, gw.url, value, args.rate, 0.5) for gw in nodes.values()))  # warm-up
    before = {node: await _on(nodes[node], meters[node].take()) for node in nodes}
    GC.take()
    stop = asyncio.Event()
    propagation: list[float] = []
    failures: list[str] = []
    churner = (asyncio.create_task(churn(session, nodes["a"].url, nodes["b"].url, args.churn, stop, propagation,
                                         failures)) if churning else None)
    started = time.perf_counter()
    loads = await asyncio.gather(*(proxy_load(session, gw.url, value, args.rate, args.seconds) for gw in nodes.values()))
    seconds = time.perf_counter() - started
    after = {node: await _on(nodes[node], meters[node].take()) for node in nodes}
    stop.set()
    changes = await churner if churner is not None else 0
    result: dict = {"seconds": round(seconds, 2), "changes": changes, "failures": failures[:3],
                    "load_1m": os.getloadavg()[0], "gc": GC.take()}
    for node, load in zip(nodes, loads, strict=True):
        gaps, cpu_after = after[node]
        result[node] = holds(gaps, cpu_after - before[node][1], seconds) | {
            "proxy_p99_ms": load["p99_ms"], "proxy_max_ms": load["max_ms"], "proxy_errors": load["errors"]}
    return result


async def _on(gateway: RunningGateway, coroutine: Any) -> Any:
    """Await ``coroutine`` run on the gateway's own loop (its state lives there)."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, gateway.runtime.loop))


async def measure(nodes: dict[str, RunningGateway], args: argparse.Namespace) -> dict:
    meters = {node: LoopMeter() for node in nodes}
    for node, gw in nodes.items():
        await _on(gw, meters[node].start())
    runs = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {ADMIN}"}) as session:
        # Warm-up: the first API calls compile statements and fill caches once.
        stop = asyncio.Event()
        warm = asyncio.create_task(churn(session, nodes["a"].url, nodes["b"].url, args.churn, stop, [], []))
        await asyncio.sleep(2)
        stop.set()
        await warm
        for _ in range(args.repeat):
            idle = await phase(session, nodes, meters, args, churning=False)
            busy = await phase(session, nodes, meters, args, churning=True)
            per_s = busy["changes"] / busy["seconds"]
            per_change = {node: round((busy[node]["cpu_ms_per_s"] - idle[node]["cpu_ms_per_s"]) / per_s, 2)
                          for node in nodes}
            run = {"idle": idle, "churn": busy, "cpu_ms_per_change": per_change}
            print(json.dumps(run), flush=True)
            runs.append(run)
    for node, gw in nodes.items():
        await _on(gw, meters[node].stop())
    return {"runs": runs}


async def sequential_api(gateway: RunningGateway, rounds: int, calls: int) -> dict:
    """CPU of the gateway's loop thread per API change, one call at a time (keys created
    and deleted; no proxy load): a median of ``rounds`` rounds of ``calls`` changes."""
    per_change = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as session:
        async def changes(count: int) -> None:
            for _ in range(count // 2):
                async with session.post(gateway.url + KEYS_API, json={"name": "sequential"}) as response:
                    key_id = (await response.json())["virtual_key"]["id"]
                async with session.delete(f"{gateway.url}{KEYS_API}/{key_id}") as response:
                    await response.read()

        await changes(50)  # warm-up
        for _ in range(rounds):
            before = await _on(gateway, _thread_cpu())
            await changes(calls)
            per_change.append(round((await _on(gateway, _thread_cpu()) - before) * 1000 / calls, 2))
    return {"cpu_ms_per_change": per_change, "median": sorted(per_change)[len(per_change) // 2],
            "load_1m": os.getloadavg()[0]}


async def bulk_change(nodes: dict[str, RunningGateway], count: int) -> dict:
    """The longest holds of node B's loop while it applies one bulk call of ``count``
    keys made on node A (until it holds the version the call made)."""
    meter = LoopMeter()
    await _on(nodes["b"], meter.start())
    keys = [{"name": f"bulk {index}"} for index in range(count)]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as session:
        await _on(nodes["b"], meter.take())
        async with session.post(nodes["a"].url + KEYS_API + "/bulk", json={"virtual_keys": keys}) as response:
            assert response.status == 201, await response.text()
    version = nodes["a"].runtime.snapshot.version
    started = time.perf_counter()
    # Another thread's gateway: nothing to wait on but its version.
    while nodes["b"].runtime.snapshot.version < version and time.perf_counter() - started < 60:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    gaps, _ = await _on(nodes["b"], meter.take())
    await _on(nodes["b"], meter.stop())
    ordered = sorted(gaps, reverse=True)
    return {"keys": count, "applied_s": round(time.perf_counter() - started, 2), "hold_max_ms": round(ordered[0], 2),
            "holds_top5_ms": [round(gap, 2) for gap in ordered[:5]], "load_1m": os.getloadavg()[0]}


async def _thread_cpu() -> float:
    return time.thread_time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--seconds", type=float, default=5.0, help="proxy load per phase")
    parser.add_argument("--rate", type=float, default=50.0, help="proxy requests per second on each node")
    parser.add_argument("--churn", type=float, default=100.0, help="changes per second during the churn phase")
    parser.add_argument("--repeat", type=int, default=2, help="idle/churn phase pairs (0: none)")
    parser.add_argument("--sequential", type=int, default=0, metavar="CALLS",
                        help="also: CPU per API change made one at a time on node A (5 rounds of CALLS)")
    parser.add_argument("--bulk", type=int, default=0, metavar="KEYS",
                        help="also: node B's longest holds while it applies one bulk call of KEYS keys")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tollway-steps-"))
    mock_port = free_port()
    logs = open(work / "mock.log", "wb")  # noqa: SIM115 - closed in finally
    mock = subprocess.Popen([sys.executable, "-m", "tollway", "mock-upstream", "--port", str(mock_port)],
                            stdout=logs, stderr=logs, env={**os.environ, "PYTHONPATH": str(ROOT)})
    server = start_postgres() if args.database == "postgresql" else None
    nodes: dict[str, RunningGateway] = {}
    try:
        wait_http(f"http://127.0.0.1:{mock_port}/_mock/stats", process=mock)
        url = server.create_database("steps") if server is not None else f"sqlite:///{work}/keys.db"
        seeded_s = asyncio.run(seed(url, args.keys))
        config = gateway_config(url, mock_port) | {"log_level": "error"}
        nodes = {"a": start_gateway(config), "b": start_gateway(config)}
        result = {"args": {k: str(v) for k, v in vars(args).items()}, "seed_s": round(seeded_s, 1)}
        if args.repeat:
            result |= asyncio.run(measure(nodes, args))
        if args.sequential:
            result["sequential_api"] = asyncio.run(sequential_api(nodes["a"], 5, args.sequential))
            print(json.dumps(result["sequential_api"]), flush=True)
        if args.bulk:
            result["bulk_change"] = asyncio.run(bulk_change(nodes, args.bulk))
            print(json.dumps(result["bulk_change"]), flush=True)
    finally:
        for gw in nodes.values():
            gw.stop()
        if server is not None:
            server.stop()
        mock.send_signal(signal.SIGTERM)
        mock.wait(30)
        logs.close()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.results}")


if __name__ == "__main__":
    main()
