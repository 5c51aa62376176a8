"""Streams through the gateway arrive intact: issue 12's reproduction, as figures.

Starts the mock (`--completion-tokens 300 --latency-ms 15`, optionally splitting its streams
at random byte offsets) and a one-worker Tollway in front of it, then runs streaming chat
completions `--concurrency` at a time, straight to the mock and through the gateway, and
counts the streams with an event that is not valid JSON (what makes the `openai` SDK raise
JSONDecodeError).

    .venv/bin/python bench/stream_integrity.py --streams 400 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

import aiohttp
import orjson
from gateways import MODEL, ROOT, TOLLWAY_PYTHON, Limits, Service
from loadgen import free_port
from tollway_side import ROUTED_MODEL, tollway_service

from tollway.providers.sse import SSEParser


def _damaged(data: bytes) -> bool:
    parser = SSEParser()
    for event in parser.feed(data) + parser.flush():
        if event.data == b"[DONE]":
            continue
        try:
            orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return True
    return not data.endswith(b"data: [DONE]\n\n")


async def _run(url: str, headers: dict, model: str, streams: int, concurrency: int) -> int:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "Write a long answer."}]}
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one() -> bool:
            async with gate, session.post(url, json=body, headers=headers) as response:
                return _damaged(await response.read())

        results = await asyncio.gather(*(one() for _ in range(streams)))
    return sum(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--split-max-bytes", type=int, default=0, help="mock cuts its streams at random offsets")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tollway-stream-integrity-"))
    mock_port, port = free_port(), free_port()
    mock = Service("mock", [str(TOLLWAY_PYTHON), "-m", "tollway", "mock-upstream", "--port", str(mock_port),
                            "--completion-tokens", "300", "--latency-ms", "15",
                            "--stream-split-max-bytes", str(args.split_max_bytes), "--stream-jitter-ms",
                            "0.2" if args.split_max_bytes else "0"],
                   f"http://127.0.0.1:{mock_port}", "/_mock/stats", log=workdir / "mock.log", cwd=ROOT)
    gateway, key = tollway_service(Limits(), mock_port, port, workdir)
    with mock.start(), gateway.start():
        direct = asyncio.run(_run(f"{mock.base_url}/v1/chat/completions", {"Authorization": "Bearer sk-mock"}, MODEL,
                                  args.streams, args.concurrency))
        through = asyncio.run(_run(f"{gateway.base_url}/v1/chat/completions", {"Authorization": f"Bearer {key}"},
                                   ROUTED_MODEL, args.streams, args.concurrency))
    print(f"load average {os.getloadavg()[0]:.2f}; {args.streams} streams of 300 tokens, {args.concurrency} at a time, "
          f"split {args.split_max_bytes or 'off'}")
    print(f"  straight to the mock: {direct} damaged ({100 * direct / args.streams:.2f} %)")
    print(f"  through Tollway:      {through} damaged ({100 * through / args.streams:.2f} %)")


if __name__ == "__main__":
    main()
