"""Redis counters against memory counters, side by side in one run; and 2 workers against 1.

Starts the mock upstream, a redis-server (no persistence, 127.0.0.1) and five gateways
as separate processes, with `overhead.py`'s governance: the typical five-level
hierarchy (7 counters a request) and the worst case (21 counters), each with memory
counters and with Redis counters (one worker), plus the typical one with Redis counters
and two workers. Then drives the same chat-completion load at each concurrency against
the mock directly and each gateway in turn, alternating run by run, and prints medians
with their spread, the latency each adds over the mock, the CPU each spends per request
(gateway processes, and redis-server for the Redis targets) and the ratios.

    .venv/bin/python bench/redis_counters.py [--seconds 3] [--repeats 3] [--concurrency 16,64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from loadgen import ProcessMeter, add_run_arguments, free_port, medians_text, metered_drive, summarise
from overhead import PROMPT, VK, bench_config, exhaustive_config, wait_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests.support
from tests.support.redis_server import start_redis

REDIS = {"backend": "redis"}  # the default timeout (50 ms) and fail_closed
# name -> (config builder, counters, workers)
GATEWAYS = {
    "memory-7": (bench_config, "memory", 1),
    "redis-7": (bench_config, "redis", 1),
    "memory-21": (exhaustive_config, "memory", 1),
    "redis-21": (exhaustive_config, "redis", 1),
    "redis-7-2w": (bench_config, "redis", 2),
}


async def measure(args: argparse.Namespace, ports: dict[str, int], meters: dict[str, ProcessMeter],
                  redis_meter: ProcessMeter) -> dict:
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    json_type = {"Content-Type": "application/json"}
    gateway_body = json.dumps({**payload, "model": "mock/gpt-4o-mini"}).encode()
    targets = {"direct": (f"http://127.0.0.1:{ports['direct']}/v1/chat/completions",
                          {**json_type, "Authorization": "Bearer sk"}, json.dumps(payload).encode())}
    for name in GATEWAYS:
        targets[name] = (f"http://127.0.0.1:{ports[name]}/v1/chat/completions",
                         {**json_type, "Authorization": f"Bearer {VK}"}, gateway_body)
    results: dict = {}
    for concurrency in args.concurrency:
        runs: dict[str, list] = {name: [] for name in targets}
        for url, headers, body in targets.values():  # warm-up, not counted
            await metered_drive(None, url, headers, body, concurrency, 0.5)
        for _ in range(args.repeats):
            for name, (url, headers, body) in targets.items():
                redis_before = redis_meter.cpu_seconds()
                run = await metered_drive(meters[name], url, headers, body, concurrency, args.seconds)
                if name.startswith("redis") and run["n"]:
                    run["redis_us"] = (redis_meter.cpu_seconds() - redis_before) / run["n"] * 1e6
                runs[name].append(run)
        results[concurrency] = {name: summarise(r) for name, r in runs.items()}
        for name, r in runs.items():
            redis_us = sorted(run["redis_us"] for run in r if "redis_us" in run)
            if redis_us:
                results[concurrency][name]["redis_us"] = redis_us[len(redis_us) // 2]
    return results


def report(results: dict) -> None:
    print("\nchat completions, one gateway worker unless -2w; 7 or 21 counters a request; medians (± half range)")
    print("added p50 = over the mock; CPU = gateway processes per request; redis = redis-server CPU per request")
    print(f"{'conc':>4} {'target':>10} {'req/s':>14} {'p50 ms':>13} {'p99 ms':>13} {'added p50':>10}"
          f" {'CPU µs':>7} {'redis µs':>8} {'errors':>6}")
    for concurrency, by_target in results.items():
        direct = by_target["direct"]
        for name, r in by_target.items():
            redis_us = f"{r['redis_us']:>8.0f}" if "redis_us" in r else f"{'':>8}"
            print(f"{concurrency:>4} {name:>10} {medians_text(r)}"
                  f"{r['p50_ms'] - direct['p50_ms']:>10.3f} {r.get('cpu_s_per_1k', 0) * 1000:>7.0f} {redis_us}"
                  f" {r['errors']:>6}")
    for concurrency, by_target in results.items():
        for counters in ("7", "21"):
            memory, redis = by_target[f"memory-{counters}"], by_target[f"redis-{counters}"]
            print(f"concurrency {concurrency}, {counters} counters: redis / memory throughput "
                  f"{redis['rps'] / memory['rps']:.2f} (target >= 0.70); redis adds "
                  f"{redis['p50_ms'] - memory['p50_ms']:.3f} ms p50")
        print(f"concurrency {concurrency}: 2 workers / 1 worker (redis, 7 counters) "
              f"{by_target['redis-7-2w']['rps'] / by_target['redis-7']['rps']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, [16, 64])
    args = parser.parse_args()
    redis = start_redis()
    ports = {name: free_port() for name in ("direct", *GATEWAYS)}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes: dict[str, subprocess.Popen] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            processes["direct"] = subprocess.Popen([sys.executable, "-m", "tollway", "mock-upstream",
                                                    "--port", str(ports["direct"])], env=env)
            for name, (build, counters, workers) in GATEWAYS.items():
                config = build(ports["direct"], Path(tmp) / f"{name}.db")
                if counters == "redis":
                    config["counters"] = {**REDIS, "url": redis.url}
                path = Path(tmp) / f"{name}.yaml"
                path.write_text(yaml.safe_dump(config))
                processes[name] = subprocess.Popen([sys.executable, "-m", "tollway", "serve", "--config", str(path),
                                                    "--port", str(ports[name]), "--workers", str(workers)], env=env)
            for port in ports.values():
                wait_port(port)
            meters = {name: ProcessMeter(process.pid) for name, process in processes.items()}
            assert redis.process is not None
            try:
                import uvloop

                uvloop.install()
            except ImportError:
                pass
            results = asyncio.run(measure(args, ports, meters, ProcessMeter(redis.process.pid)))
        finally:
            for process in processes.values():
                process.send_signal(signal.SIGTERM)
            for process in processes.values():
                process.wait(timeout=30)
            redis.stop()
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
