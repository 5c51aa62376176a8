"""Gateway overhead against the mock provider, measured side by side in one run.

Three suites (``--suites``, all by default), one mock upstream for all:

- ``chat``: starts one-worker gateways as separate processes and drives the same
  chat-completion load at each concurrency against: the mock directly, a gateway with no
  governance configured, a gateway with a typical five-level governance hierarchy (7
  counters), the same under strict enforcement with clamping (every request's worst case
  computed from its body and its output cap injected: it sends none), and one with every
  level fully limited (21 counters).
- ``transports``: the upstream HTTP transports (Tollway's native client, aiohttp,
  pyreqwest, httpx) each driving the mock from a process of its own: throughput, CPU per
  request, p50/p99, non-streaming and streaming, and the features each has
  (`transports.py`, `transport_compare.py`).
- ``routes``: the recent routes (Responses, count_tokens, images, transcription,
  moderations, Google's generateContent) against the mock directly, the plain and the
  governed gateway: added latency and CPU µs per request (`route_overhead.py`).

Targets alternate run by run so that machine noise spreads evenly; medians are printed
with their spread, with the load average beside them, and every figure is written to
``bench/results/overhead.json`` (``--json`` elsewhere).

    .venv/bin/python bench/overhead.py [--suites chat,transports,routes] [--seconds 3] [--repeats 3]
        [--concurrency 1,16,64] [--stream] [--route-concurrency 1,16] [--transports native,aiohttp,pyreqwest,httpx]
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
from loadgen import ProcessMeter, add_run_arguments, free_port, medians_text, metered_drive, summarise, wait_http
from route_overhead import add_route_providers, measure_routes, report_routes
from transport_compare import compare
from transport_compare import report as report_transports

VK = "tw-bench-0123456789abcdefghijklmnopqrstuv"
PROMPT = "Summarise the following text in one sentence. " * 20  # ≈ 1 KB request body


def plain_config(mock_port: int, database: Path) -> dict:
    """The gateway with no governance at all: the proxy's own overhead."""
    return {
        "database_url": f"sqlite:///{database}",
        "log_level": "warning",
        "providers": {"mock": {"type": "openai", "base_url": f"http://127.0.0.1:{mock_port}/v1", "keys": [{"value": "sk-bench"}]}},
        "pricing": {"mock/gpt-4o-mini": {"input": 0.15, "output": 0.6}},
    }


_HUGE_BUDGET = {"max_limit": 1_000_000, "reset_duration": "1d"}
_HUGE_RATE = {"request_max_limit": 10**9, "request_reset_duration": "1m",
              "token_max_limit": 10**12, "token_reset_duration": "1m"}


def bench_config(mock_port: int, database: Path) -> dict:
    """A typical five-level hierarchy (7 counters a request): a provider request limit,
    a model token limit, a key with a budget and both rate-limit sides, a team budget
    and a customer budget."""
    config = plain_config(mock_port, database)
    config["providers"]["mock"]["rate_limit"] = {"request_max_limit": 10**9, "request_reset_duration": "1m"}
    config["governance"] = {
        "customers": [{"id": "c", "name": "Customer", "budget": _HUGE_BUDGET}],
        "teams": [{"id": "t", "name": "Team", "customer_id": "c", "budget": _HUGE_BUDGET}],
        "virtual_keys": [{"id": "k", "name": "Key", "value": VK, "team_id": "t", "budget": _HUGE_BUDGET,
                          "rate_limit": _HUGE_RATE}],
        "model_configs": [{"model_name": "gpt-4o-mini", "provider": "mock",
                           "rate_limit": {"token_max_limit": 10**12, "token_reset_duration": "1m"}}],
    }
    return config


def strict_config(mock_port: int, database: Path) -> dict:
    """`bench_config` with every budget and token limit strict, clamping: each request's
    worst case is computed from its body, and the cap it does not send is injected (16,
    as the others ask for, so the mock answers alike)."""
    config = bench_config(mock_port, database)
    config["governance_defaults"] = {"enforcement": "strict", "on_insufficient": "clamp"}
    config["estimate"] = {"injected_max_tokens": 16}
    return config


def exhaustive_config(mock_port: int, database: Path) -> dict:
    """The worst case: every level (provider, model + provider, model-only, key, key's
    provider config, team, customer) with a budget and both rate-limit sides: 21 counters."""
    config = plain_config(mock_port, database)
    config["providers"]["mock"].update(budget=_HUGE_BUDGET, rate_limit=_HUGE_RATE)
    full = {"budget": _HUGE_BUDGET, "rate_limit": _HUGE_RATE}
    config["governance"] = {
        "customers": [{"id": "c", "name": "Customer", **full}],
        "teams": [{"id": "t", "name": "Team", "customer_id": "c", **full}],
        "virtual_keys": [{"id": "k", "name": "Key", "value": VK, "team_id": "t", **full,
                          "provider_configs": [{"provider": "mock", **full}]}],
        "model_configs": [{"model_name": "gpt-4o-mini", "provider": "mock", **full},
                          {"model_name": "gpt-4o-mini", **full}],
    }
    return config


def wait_port(port: int, timeout_s: float = 60) -> None:
    """Wait until a Tollway gateway or the mock answers on ``port``."""
    wait_http(f"http://127.0.0.1:{port}/health", timeout_s)


async def measure(args: argparse.Namespace, ports: dict[str, int], meters: dict[str, ProcessMeter]) -> dict:
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    if args.stream:
        payload["stream"] = True
    direct_body = json.dumps(payload).encode()
    gateway_body = json.dumps({**payload, "model": "mock/gpt-4o-mini"}).encode()
    uncapped = {name: value for name, value in payload.items() if name != "max_tokens"}
    strict_body = json.dumps({**uncapped, "model": "mock/gpt-4o-mini"}).encode()
    json_type = {"Content-Type": "application/json"}
    targets = {
        "direct": (f"http://127.0.0.1:{ports['direct']}/v1/chat/completions", {**json_type, "Authorization": "Bearer sk"}, direct_body),
        "gateway": (f"http://127.0.0.1:{ports['gateway']}/v1/chat/completions", json_type, gateway_body),
        "governed": (f"http://127.0.0.1:{ports['governed']}/v1/chat/completions",
                     {**json_type, "Authorization": f"Bearer {VK}"}, gateway_body),
        "strict": (f"http://127.0.0.1:{ports['strict']}/v1/chat/completions", {**json_type, "Authorization": f"Bearer {VK}"},
                   strict_body),
        "worst": (f"http://127.0.0.1:{ports['worst']}/v1/chat/completions", {**json_type, "Authorization": f"Bearer {VK}"}, gateway_body),
    }
    results: dict = {}
    for concurrency in args.concurrency:
        runs: dict[str, list] = {name: [] for name in targets}
        for url, headers, body in targets.values():  # warm-up, not counted
            await metered_drive(None, url, headers, body, concurrency, 0.5, args.stream)
        for _ in range(args.repeats):
            for name, (url, headers, body) in targets.items():
                runs[name].append(await metered_drive(meters[name], url, headers, body, concurrency, args.seconds, args.stream))
        results[concurrency] = {name: summarise(r) for name, r in runs.items()}
    return results


def report(results: dict, stream: bool) -> None:
    print(f"\nchat completions ({'stream' if stream else 'non-stream'}), one gateway worker, medians (± half range)")
    print("direct = the mock alone; gateway = no governance; governed = five levels, 7 counters; strict = governed, "
          "strict with clamping and an injected cap; worst = 21 counters")
    print(f"{'conc':>4} {'target':>9} {'req/s':>14} {'p50 ms':>13} {'p99 ms':>13} {'added p50':>10} {'rps ratio':>9}"
          f" {'CPU µs/req':>10} {'errors':>6}")
    for concurrency, by_target in results.items():
        direct = by_target["direct"]
        for name, r in by_target.items():
            added = r["p50_ms"] - direct["p50_ms"]
            ratio = r["rps"] / direct["rps"] if direct["rps"] else 0
            cpu = r.get("cpu_s_per_1k", 0) * 1000
            print(f"{concurrency:>4} {name:>9} {medians_text(r)}"
                  f"{added:>10.3f} {ratio:>9.2f} {cpu:>10.0f} {r['errors']:>6}")
    for concurrency, by_target in results.items():
        off = by_target["gateway"]["rps"]
        print(f"governance on/off throughput at concurrency {concurrency}: five levels {by_target['governed']['rps'] / off:.2f},"
              f" strict {by_target['strict']['rps'] / off:.2f}, worst case {by_target['worst']['rps'] / off:.2f}")
    # The machine's cores are shared with the load generator and the mock, which dilutes the
    # gateway's own cost in the throughput ratio; a gateway with a core to itself would be
    # bound by its CPU per request, so print that ratio as well.
    for concurrency, by_target in results.items():
        off = by_target["gateway"].get("cpu_s_per_1k", 0)
        if off:
            print(f"governance on/off capacity (gateway CPU per request, off/on) at concurrency {concurrency}: five levels"
                  f" {off / by_target['governed']['cpu_s_per_1k']:.2f}, strict {off / by_target['strict']['cpu_s_per_1k']:.2f},"
                  f" worst case {off / by_target['worst']['cpu_s_per_1k']:.2f}")


RESULTS = Path(__file__).resolve().parent / "results" / "overhead.json"
SUITES = ("chat", "transports", "routes")
CHAT_GATEWAYS = {"gateway": plain_config, "governed": bench_config, "strict": strict_config, "worst": exhaustive_config}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, [1, 16, 64])
    parser.add_argument("--stream", action="store_true", help="the chat suite streams")
    parser.add_argument("--suites", type=lambda s: s.split(","), default=list(SUITES))
    parser.add_argument("--transports", type=lambda s: s.split(","), default=None,
                        help="transports to compare (default: every installed one)")
    parser.add_argument("--route-concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    parser.add_argument("--routes", type=lambda s: s.split(","), default=None, help="route scenarios (default: all)")
    args = parser.parse_args()
    unknown = set(args.suites) - set(SUITES)
    if unknown:
        parser.error(f"--suites: unknown {sorted(unknown)}; choose from {', '.join(SUITES)}")
    args.json = args.json or RESULTS
    return args


def gateways_needed(suites: list[str]) -> dict:
    """The gateways the chosen suites drive (the routes suite uses the plain and the governed one)."""
    names = set(CHAT_GATEWAYS) if "chat" in suites else set()
    if "routes" in suites:
        names |= {"gateway", "governed"}
    return {name: build for name, build in CHAT_GATEWAYS.items() if name in names}


def start_processes(tmp: Path, ports: dict[str, int], builders: dict) -> dict[str, subprocess.Popen]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    mock = [sys.executable, "-m", "tollway", "mock-upstream", "--port", str(ports["direct"])]
    processes = {"direct": subprocess.Popen(mock, env=env)}
    for name, build in builders.items():
        path = tmp / f"{name}.yaml"
        config = add_route_providers(build(ports["direct"], tmp / f"{name}.db"), ports["direct"])
        path.write_text(yaml.safe_dump(config))
        processes[name] = subprocess.Popen([sys.executable, "-m", "tollway", "serve", "--config", str(path),
                                            "--port", str(ports[name])], env=env)
    return processes


async def run_suites(args: argparse.Namespace, ports: dict[str, int], meters: dict[str, ProcessMeter]) -> dict:
    results: dict = {}
    if "chat" in args.suites:
        results["chat"] = {"stream": args.stream, "by_concurrency": await measure(args, ports, meters)}
    if "transports" in args.suites:
        results["transports"] = compare(ports["direct"], args.concurrency, args.repeats, args.seconds, args.transports)
    if "routes" in args.suites:
        keys = {"direct": "sk-mock", "gateway": "sk-placeholder", "governed": VK}
        results["routes"] = await measure_routes(ports, meters, keys, args.route_concurrency, args.repeats, args.seconds,
                                                 args.routes)
    return results


def main() -> None:
    args = parse_args()
    builders = gateways_needed(args.suites)
    ports = {name: free_port() for name in ("direct", *builders)}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        processes = start_processes(Path(tmp), ports, builders)
        try:
            for port in ports.values():
                wait_port(port)
            meters = {name: ProcessMeter(process.pid) for name, process in processes.items()}
            try:
                import uvloop

                uvloop.install()
            except ImportError:
                pass
            results = asyncio.run(run_suites(args, ports, meters))
        finally:
            for process in processes.values():
                process.send_signal(signal.SIGTERM)
            for process in processes.values():
                process.wait(timeout=30)
    load = {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count()}
    print(f"load average (1, 5, 15 min) before {_load(load_before)}, after {_load(load['after'])}; {os.cpu_count()} CPUs")
    if "chat" in results:
        report(results["chat"]["by_concurrency"], args.stream)
    if "transports" in results:
        report_transports(results["transports"])
    if "routes" in results:
        report_routes(results["routes"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"load_average": load, "options": _options(args), **results}, indent=2))
    print(f"\nfigures written to {args.json}")


def _load(values: tuple[float, float, float]) -> str:
    return " ".join(f"{value:.2f}" for value in values)


def _options(args: argparse.Namespace) -> dict:
    return {name: (str(value) if isinstance(value, Path) else value) for name, value in vars(args).items()}


if __name__ == "__main__":
    main()
