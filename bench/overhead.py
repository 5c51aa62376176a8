"""Gateway overhead against the mock provider, measured side by side in one run.

Starts the mock upstream and two one-worker gateways as separate processes, then
drives the same chat-completion load at each concurrency against: the mock directly,
a gateway with no governance configured, and a gateway with a five-level governance
hierarchy (provider, model, virtual key + provider config, team, customer). The
targets alternate run by run so that machine noise spreads evenly; medians are
printed with their spread.

    .venv/bin/python bench/overhead.py [--seconds 3] [--repeats 3] [--concurrency 1,16,64] [--stream]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

VK = "tw-bench-0123456789abcdefghijklmnopqrstuv"
PROMPT = "Summarise the following text in one sentence. " * 20  # ≈ 1 KB request body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def plain_config(mock_port: int, database: Path) -> dict:
    """The gateway with no governance at all: the proxy's own overhead."""
    return {
        "database_url": f"sqlite:///{database}",
        "log_level": "warning",
        "providers": {"mock": {"type": "openai", "base_url": f"http://127.0.0.1:{mock_port}/v1", "keys": [{"value": "sk-bench"}]}},
        "pricing": {"mock/gpt-4o-mini": {"input": 0.15, "output": 0.6}},
    }


def bench_config(mock_port: int, database: Path) -> dict:
    """Five levels, each with a budget and both sides of a rate limit (21 counters a request)."""
    huge = {"max_limit": 1_000_000, "reset_duration": "1d"}
    many = {"request_max_limit": 10**9, "request_reset_duration": "1m",
            "token_max_limit": 10**12, "token_reset_duration": "1m"}
    return {
        "database_url": f"sqlite:///{database}",
        "log_level": "warning",
        "providers": {"mock": {"type": "openai", "base_url": f"http://127.0.0.1:{mock_port}/v1",
                               "keys": [{"value": "sk-bench"}], "budget": huge, "rate_limit": many}},
        "pricing": {"mock/gpt-4o-mini": {"input": 0.15, "output": 0.6}},
        "governance": {
            "customers": [{"id": "c", "name": "Customer", "budget": huge, "rate_limit": many}],
            "teams": [{"id": "t", "name": "Team", "customer_id": "c", "budget": huge, "rate_limit": many}],
            "virtual_keys": [{"id": "k", "name": "Key", "value": VK, "team_id": "t", "budget": huge, "rate_limit": many,
                              "provider_configs": [{"provider": "mock", "budget": huge, "rate_limit": many}]}],
            "model_configs": [{"model_name": "gpt-4o-mini", "provider": "mock", "budget": huge, "rate_limit": many},
                              {"model_name": "gpt-4o-mini", "budget": huge, "rate_limit": many}],
        },
    }


async def drive(url: str, headers: dict, body: bytes, concurrency: int, seconds: float, stream: bool) -> dict:
    """Closed-loop load: ``concurrency`` workers each send requests back to back."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                        continue
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)
    return {"rps": n / elapsed, "p50_ms": latencies[n // 2] * 1000 if n else 0,
            "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0, "errors": errors, "n": n}


def summarise(runs: list[dict]) -> dict:
    out = {}
    for field in ("rps", "p50_ms", "p99_ms"):
        values = [r[field] for r in runs]
        out[field] = statistics.median(values)
        out[field + "_spread"] = (max(values) - min(values)) / 2
    out["errors"] = sum(r["errors"] for r in runs)
    return out


async def measure(args: argparse.Namespace, mock_port: int, plain_port: int, governed_port: int) -> dict:
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    if args.stream:
        payload["stream"] = True
    direct_body = json.dumps(payload).encode()
    gateway_body = json.dumps({**payload, "model": "mock/gpt-4o-mini"}).encode()
    json_type = {"Content-Type": "application/json"}
    targets = {
        "direct": (f"http://127.0.0.1:{mock_port}/v1/chat/completions", {**json_type, "Authorization": "Bearer sk"}, direct_body),
        "gateway": (f"http://127.0.0.1:{plain_port}/v1/chat/completions", json_type, gateway_body),
        "governed": (f"http://127.0.0.1:{governed_port}/v1/chat/completions", {**json_type, "Authorization": f"Bearer {VK}"}, gateway_body),
    }
    results: dict = {}
    for concurrency in args.concurrency:
        runs: dict[str, list] = {name: [] for name in targets}
        for name, (url, headers, body) in targets.items():  # warm-up, not counted
            await drive(url, headers, body, concurrency, 0.5, args.stream)
        for _ in range(args.repeats):
            for name, (url, headers, body) in targets.items():
                runs[name].append(await drive(url, headers, body, concurrency, args.seconds, args.stream))
        results[concurrency] = {name: summarise(r) for name, r in runs.items()}
    return results


def report(results: dict, stream: bool) -> None:
    print(f"\nchat completions ({'stream' if stream else 'non-stream'}), one gateway worker, medians (± half range)")
    print(f"{'conc':>4} {'target':>9} {'req/s':>14} {'p50 ms':>13} {'p99 ms':>13} {'added p50':>10} {'rps ratio':>9} {'errors':>6}")
    for concurrency, by_target in results.items():
        direct = by_target["direct"]
        for name, r in by_target.items():
            added = r["p50_ms"] - direct["p50_ms"]
            ratio = r["rps"] / direct["rps"] if direct["rps"] else 0
            print(f"{concurrency:>4} {name:>9} {r['rps']:>8.0f} ±{r['rps_spread']:<5.0f}"
                  f"{r['p50_ms']:>7.3f} ±{r['p50_ms_spread']:<5.3f}{r['p99_ms']:>7.2f} ±{r['p99_ms_spread']:<5.2f}"
                  f"{added:>10.3f} {ratio:>9.2f} {r['errors']:>6}")
    for concurrency, by_target in results.items():
        on, off = by_target["governed"]["rps"], by_target["gateway"]["rps"]
        print(f"governance on/off throughput at concurrency {concurrency}: {on / off:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64])
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    mock_port, plain_port, governed_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        configs = {plain_port: plain_config(mock_port, Path(tmp) / "plain.db"),
                   governed_port: bench_config(mock_port, Path(tmp) / "governed.db")}
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        processes = [subprocess.Popen([sys.executable, "-m", "tollway", "mock-upstream", "--port", str(mock_port)], env=env)]
        for port, config in configs.items():
            path = Path(tmp) / f"gateway-{port}.yaml"
            path.write_text(yaml.safe_dump(config))
            processes.append(subprocess.Popen([sys.executable, "-m", "tollway", "serve", "--config", str(path),
                                               "--port", str(port)], env=env))
        try:
            for port in (mock_port, plain_port, governed_port):
                wait_port(port)
            try:
                import uvloop  # noqa: PLC0415 - optional speed-up of the load generator

                uvloop.install()
            except ImportError:
                pass
            results = asyncio.run(measure(args, mock_port, plain_port, governed_port))
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(timeout=30)
    report(results, args.stream)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
