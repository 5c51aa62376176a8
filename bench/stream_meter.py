"""The stream meter's cost per chunk: `StreamMeter.admit` over 200,000 one-event SSE chunks
(the usual chunk, inside what the reservation covers), then `settled_count`, which counts
what was relayed unparsed. Five runs, ns per chunk, of the checkout given, so that two
checkouts are compared side by side on one quiet machine:

    .venv/bin/python bench/stream_meter.py /path/to/old/checkout
    .venv/bin/python bench/stream_meter.py .
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

CHUNK = (b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
         b'"choices":[{"index":0,"delta":{"content":"hello "},"finish_reason":null}]}\n\n')
CHUNKS = 200_000


async def _no_room(_: int) -> None:
    return None


async def run(meter_class: type, chunks: int) -> float:
    meter = meter_class(10**9, _no_room)
    admit = meter.admit
    started = time.perf_counter()
    for _ in range(chunks):
        await admit(CHUNK)
    meter.settled_count()
    return (time.perf_counter() - started) / chunks * 1e9


async def main(checkout: str) -> None:
    sys.path.insert(0, checkout)
    from tollway.proxy.metering import StreamMeter  # the checkout's own

    runs = [await run(StreamMeter, CHUNKS) for _ in range(5)]
    print(f"{checkout}: ns per chunk {[round(r) for r in runs]}, median {statistics.median(runs):.0f}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "."))
