"""A bounded soak of a real `tollway serve` process: a steady, moderate open-loop rate of
mixed traffic for N minutes, with the gateway's memory and file descriptors read every
minute. Flat RSS and fds at the end say nothing accumulates; a rise says something leaks.

    .venv/bin/python bench/soak.py               # 15 s of warm-up, then 10 minutes at 40 requests/s
    .venv/bin/python bench/soak.py --minutes 1   # a quick look

The traffic, per request: plain and streamed chat completions and Anthropic-format
messages with a virtual key that has room; a virtual key whose request limit (30 a
minute) denies most of what it sends (429); and upstream faults queued on the mock
every second (500s and 429s retried, connections dropped before the answer and mid-stream,
answers that hang past the provider's 2 s timeout). Clients hang up on some streams.

Everything runs on 127.0.0.1: the mock upstream and the gateway are child processes,
stopped at the end. Not part of the test suite (it takes minutes by design). Results are
printed and written to bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "soak.json"
GOOD_KEY = "tw-soak-good-0123456789abcdefghij"
LOW_KEY = "tw-soak-low-0123456789abcdefghijk"
HELLO = [{"role": "user", "content": "Tell me something short."}]
FAULTS_PER_SECOND = [
    {"status": 500}, {"status": 429, "retry_after": 0}, {"drop": "before_response"},
    {"drop": "mid_stream", "after_chunks": 3}, {"status": 503},
]
HANG = {"delay_ms": 2500}  # past the provider's 2 s timeout: a 504 (one every 5 s)


def _config(mock_url: str, database: Path) -> dict:
    return {
        "database_url": f"sqlite:///{database}", "flush_interval": "5s", "management_api": False,
        "log_level": "warning",
        "providers": {"mock": {"type": "openai", "base_url": mock_url + "/v1", "keys": [{"value": "sk-soak"}],
                               "timeout": "2s", "max_retries": 1, "retry_backoff": 0.01}},
        "governance": {"virtual_keys": [
            {"id": "good", "name": "good", "value": GOOD_KEY,
             "rate_limit": {"request_max_limit": 10**9, "request_reset_duration": "1h",
                            "token_max_limit": 10**12, "token_reset_duration": "1h"},
             "budget": {"max_limit": 1_000_000, "reset_duration": "1d"}},
            {"id": "low", "name": "low", "value": LOW_KEY,
             "rate_limit": {"request_max_limit": 30, "request_reset_duration": "1m"}},
        ]},
    }


def _proc(pid: int) -> dict:
    """RSS (MiB) and open file descriptors of one process, from /proc."""
    rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if line.startswith("VmRSS:"))
    return {"rss_mib": round(rss_kb / 1024, 1), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def _request(rng: random.Random) -> tuple[str, dict, dict, bool]:
    """(path, body, headers, hang up mid-stream) of one request of the mix."""
    roll = rng.random()
    good = {"Authorization": f"Bearer {GOOD_KEY}"}
    if roll < 0.35:
        return "/v1/chat/completions", {"model": "mock/gpt-4o-mini", "messages": HELLO, "max_tokens": 16}, good, False
    if roll < 0.70:
        body = {"model": "mock/gpt-4o-mini", "messages": HELLO, "max_tokens": 32, "stream": True}
        return "/v1/chat/completions", body, good, rng.random() < 0.05
    if roll < 0.85:
        headers = {"x-api-key": GOOD_KEY, "anthropic-version": "2023-06-01"}
        body = {"model": "mock/gpt-4o-mini", "messages": HELLO, "max_tokens": 16, "stream": rng.random() < 0.5}
        return "/v1/messages", body, headers, False
    return "/v1/chat/completions", {"model": "mock/gpt-4o-mini", "messages": HELLO, "max_tokens": 8}, \
        {"x-tollway-vk": LOW_KEY}, False


async def _one(session: aiohttp.ClientSession, url: str, rng: random.Random, outcomes: Counter) -> None:
    path, body, headers, hang_up = _request(rng)
    try:
        async with session.post(url + path, json=body, headers=headers) as response:
            if hang_up:
                await response.content.readline()
                outcomes["client hung up"] += 1
                response.close()
                return
            text = await response.text()
            cut = response.status == 200 and ("stream_interrupted" in text or "event: error" in text)
            outcomes["200 cut mid-stream" if cut else str(response.status)] += 1
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        outcomes[type(exc).__name__] += 1


async def _faults(session: aiohttp.ClientSession, mock_url: str, stop: asyncio.Event) -> None:
    tick = 0
    while not stop.is_set():
        faults = FAULTS_PER_SECOND + ([HANG] if tick % 5 == 0 else [])
        async with session.post(mock_url + "/_mock/faults", json=faults) as response:
            response.raise_for_status()
        tick += 1
        try:
            await asyncio.wait_for(stop.wait(), 1)
        except asyncio.TimeoutError:
            pass


async def _reservations(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(url + "/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("tollway_reservations_in_flight "):
                return float(line.split()[1])
    return -1


async def soak(minutes: float, rate: float, warmup_s: float, gateway_pid: int, url: str, mock_url: str) -> dict:
    rng = random.Random(1)
    outcomes: Counter = Counter()
    samples: list[dict] = []
    stop = asyncio.Event()
    began = time.monotonic()
    started = began + warmup_s  # the first sample: pools, caches and the database connections are warm
    end = started + minutes * 60
    in_flight: set[asyncio.Task] = set()
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        faults = asyncio.create_task(_faults(session, mock_url, stop))

        def sample(label: str) -> None:
            entry = {"minute": label, "elapsed_s": round(time.monotonic() - began, 1), **_proc(gateway_pid),
                     "requests": sum(outcomes.values()), "in_flight": len(in_flight)}
            samples.append(entry)
            print(json.dumps(entry), flush=True)

        next_sample = started
        sent = 0
        while time.monotonic() < end:
            # Open loop: requests go out on schedule, whether earlier ones have finished or not.
            due = began + sent / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.create_task(_one(session, url, random.Random(rng.random()), outcomes))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent += 1
            if time.monotonic() >= next_sample:
                sample("start" if next_sample == started else str(round((time.monotonic() - started) / 60)))
                next_sample += 60
        stop.set()
        await faults
        await asyncio.gather(*in_flight)
        async with session.delete(mock_url + "/_mock/faults"):
            pass
        await asyncio.sleep(3)  # keep-alive and stream closes settle
        reservations = await _reservations(session, url)
    sample("end")
    return {"minutes": minutes, "rate_per_s": rate, "sent": sent, "outcomes": dict(outcomes),
            "reservations_in_flight_at_end": reservations, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to soak (default 10)")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second (default 40)")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds of traffic before the first sample")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tollway-soak-"))
    mock_port, gateway_port = free_port(), free_port()
    mock_url, url = f"http://127.0.0.1:{mock_port}", f"http://127.0.0.1:{gateway_port}"
    config = work / "tollway.yaml"
    config.write_text(yaml.safe_dump(_config(mock_url, work / "soak.db")))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    logs = open(work / "processes.log", "wb")  # noqa: SIM115 - closed in finally
    mock = subprocess.Popen([sys.executable, "-m", "tollway", "mock-upstream", "--port", str(mock_port),
                             "--chunk-delay-ms", "5"], stdout=logs, stderr=logs, env=env)
    gateway = subprocess.Popen([sys.executable, "-m", "tollway", "serve", "--config", str(config),
                                "--port", str(gateway_port)], stdout=logs, stderr=logs, env=env, cwd=work)
    try:
        wait_http(mock_url + "/_mock/stats", process=mock)
        wait_http(url + "/health", process=gateway)
        print(f"soak: {args.minutes:g} min at {args.rate:g} requests/s; gateway pid {gateway.pid}; logs in {work}",
              flush=True)
        result = asyncio.run(soak(args.minutes, args.rate, args.warmup, gateway.pid, url, mock_url))
    finally:
        for process in (gateway, mock):
            process.send_signal(signal.SIGTERM)
        gateway_code = gateway.wait(60)
        mock.wait(30)
        logs.close()
    first, last = result["samples"][0], result["samples"][-1]
    result["gateway_exit_code"] = gateway_code
    result["rss_mib"] = {"start": first["rss_mib"], "end": last["rss_mib"],
                         "growth": round(last["rss_mib"] - first["rss_mib"], 1)}
    result["fds"] = {"start": first["fds"], "end": last["fds"], "growth": last["fds"] - first["fds"]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nsent {result['sent']} requests: {result['outcomes']}")
    print(f"RSS {first['rss_mib']} -> {last['rss_mib']} MiB; open fds {first['fds']} -> {last['fds']}; "
          f"reservations in flight at the end: {result['reservations_in_flight_at_end']:g}; "
          f"gateway exit code {gateway_code}")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
