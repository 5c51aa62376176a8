"""How long a stream cut off at its budget takes to end: from the last token the client
receives to its final event (`data: [DONE]` after the length chunk and the error).

Starts the mock upstream (answering 5,000 tokens whatever the cap, back to back) and a
gateway whose keys each have a strict $150 budget at $1 a token, then streams once per
key, one after another. The gap measured covers the gateway's crossing decision (the
extension refused by the counter store), dropping the upstream, and the client's end of
stream.

    .venv/bin/python bench/cutoff_latency.py [--streams 50] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml
from loadgen import free_port, wait_http


def config(mock_port: int, database: Path, streams: int, redis: str | None) -> dict:
    keys = [{"id": f"k{i}", "name": f"key {i}", "value": _key(i),
             "budget": {"max_limit": 150, "reset_duration": "1d", "enforcement": "strict"}} for i in range(streams)]
    out = {
        "database_url": f"sqlite:///{database}", "log_level": "warning",
        "providers": {"mock": {"type": "openai", "base_url": f"http://127.0.0.1:{mock_port}/v1",
                               "keys": [{"value": "sk-bench"}]}},
        "pricing": {"mock/gpt-4o-mini": {"input": 1_000_000, "output": 1_000_000}},
        "governance": {"virtual_keys": keys},
    }
    if redis:
        out["counters"] = {"backend": "redis", "url": redis}
    return out


def _key(i: int) -> str:
    return f"tw-cutoff-bench-{i:04d}-0123456789abcdefghij"


async def one(session: aiohttp.ClientSession, url: str, key: str) -> float | None:
    """Milliseconds from the last content chunk to [DONE]; None when the stream was not cut."""
    body = {"model": "mock/gpt-4o-mini", "stream": True, "max_tokens": 20,
            "messages": [{"role": "user", "content": "Hello"}]}
    last_content = done = None
    cut = False
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        async for line in response.content:
            now = time.perf_counter()
            if line.startswith(b"data: [DONE]"):
                done = now
            elif line.startswith(b'data: {"error"'):
                cut = True
            elif b'"content"' in line:
                last_content = now
    if not cut or last_content is None or done is None:
        return None
    return (done - last_content) * 1000


async def measure(url: str, mock_url: str, streams: int) -> list[float]:
    async with aiohttp.ClientSession() as session:
        settings = {"completion_tokens": 5000, "ignore_max_tokens": True}
        async with session.post(f"{mock_url}/_mock/settings", json=settings) as response:
            response.raise_for_status()
        gaps = [await one(session, url, _key(i)) for i in range(streams)]
    return [gap for gap in gaps if gap is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--redis", default=None, help="a Redis URL: counters there instead of in memory")
    args = parser.parse_args()
    mock_port, port = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gateway.yaml"
        path.write_text(yaml.safe_dump(config(mock_port, Path(tmp) / "g.db", args.streams, args.redis)))
        processes = [
            subprocess.Popen([sys.executable, "-m", "tollway", "mock-upstream", "--port", str(mock_port)], env=env),
            subprocess.Popen([sys.executable, "-m", "tollway", "serve", "--config", str(path), "--port", str(port)],
                             env=env),
        ]
        try:
            wait_http(f"http://127.0.0.1:{mock_port}/health")
            wait_http(f"http://127.0.0.1:{port}/health")
            gaps = sorted(asyncio.run(measure(f"http://127.0.0.1:{port}/v1/chat/completions",
                                              f"http://127.0.0.1:{mock_port}", args.streams)))
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(timeout=30)
    if not gaps:
        print("no stream was cut off")
        return
    p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
    print(f"cut-off latency, last token to final event, {len(gaps)} streams: "
          f"p50 {statistics.median(gaps):.3f} ms, p99 {p99:.3f} ms, max {gaps[-1]:.3f} ms")


if __name__ == "__main__":
    main()
