"""Tollway against LiteLLM's proxy, side by side, with governance switched on.

One command (run from the repository root):

    .venv/bin/python bench/compare.py            # full run, about 10 minutes on 2 cores
    .venv/bin/python bench/compare.py --quick    # smoke run, about 3 minutes

Installs `litellm[proxy]` (and matplotlib) into bench/.cache/litellm-venv once, starts the
mock upstream, then Tollway and LiteLLM with the same limits at the same levels (model
rate limits, provider budget, key rate limits and budget; see bench/README.md), and
drives the same load against the mock directly and each gateway in alternating runs, at
each concurrency, non-streaming and streaming, with one worker each and then two. Then
the correctness scenarios (bench/correctness.py). Writes bench/results/compare.json (raw),
compare.md (tables with Tollway/LiteLLM ratios) and compare.png (latency against
throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from correctness import run_correctness
from gateways import COST_PER_REQUEST, MODEL, PROMPT_TOKENS, Limits, Service, mock_service, payload
from litellm_side import PYTHON as LITELLM_PYTHON
from litellm_side import ensure_venv, litellm_service
from loadgen import free_port, metered_drive, summarise
from report import write_markdown
from tollway_side import ROUTED_MODEL, tollway_service

HERE = Path(__file__).resolve().parent
GATEWAYS = ("tollway", "litellm")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _targets(mock: Service, gateways: dict[str, tuple[Service, str]], stream: bool) -> dict:
    json_type = {"Content-Type": "application/json"}
    targets = {"direct": (mock.base_url + "/v1/chat/completions", {**json_type, "Authorization": "Bearer sk-mock"},
                          payload(MODEL, stream), None)}
    for name, (service, key) in gateways.items():
        model = ROUTED_MODEL if name == "tollway" else MODEL
        targets[name] = (service.base_url + "/v1/chat/completions", {**json_type, "Authorization": f"Bearer {key}"},
                         payload(model, stream), service.meter)
    return targets


async def _load_phase(mock: Service, gateways: dict[str, tuple[Service, str]], workers: int,
                      args: argparse.Namespace) -> list[dict]:
    points = []
    for stream in (False, True):
        mode = "stream" if stream else "json"
        targets = _targets(mock, gateways, stream)
        names = list(targets)
        for concurrency in args.concurrency:
            for url, headers, body, meter in targets.values():  # warm-up, not counted
                await metered_drive(meter, url, headers, body, concurrency, args.warmup, stream)
            runs: dict[str, list] = {name: [] for name in names}
            for repeat in range(args.repeats):
                order = names[repeat % len(names):] + names[:repeat % len(names)]  # rotate who goes first
                for name in order:
                    url, headers, body, meter = targets[name]
                    runs[name].append(await metered_drive(meter, url, headers, body, concurrency, args.seconds, stream))
            for name in names:
                summary = summarise(runs[name])
                points.append({"workers": workers, "mode": mode, "concurrency": concurrency, "target": name,
                               "summary": summary, "runs": runs[name]})
            line = "  ".join(f"{n} {points[-len(names) + i]['summary']['rps']:.0f} rps "
                             f"p50 {points[-len(names) + i]['summary']['p50_ms']:.2f} ms"
                             for i, n in enumerate(names))
            log(f"  {workers}w {mode:<6} c={concurrency:<3} {line}")
    return points


def _machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import os

    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: shorter runs, 2 repeats")
    parser.add_argument("--seconds", type=float, help="length of one measured run (default 3, quick 1)")
    parser.add_argument("--warmup", type=float, help="warm-up before each point, not counted (default 1, quick 0.5)")
    parser.add_argument("--repeats", type=int, help="runs per point and target (default 3, quick 2)")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                        help="client concurrencies (default 1,16,64; quick 1,64)")
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2],
                        help="worker counts to compare (default 1,2)")
    parser.add_argument("--hold-timeout", type=float,
                        help="how long a burst request may be held by a gateway (default 180 s, quick 10 s)")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-correctness", action="store_true")
    parser.add_argument("--litellm", default="litellm[proxy]", help="pip requirement for LiteLLM (e.g. a pinned version)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where compare.{json,md,png} go")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (1.0 if args.quick else 3.0)
    args.warmup = args.warmup or (0.5 if args.quick else 1.0)
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.concurrency = args.concurrency or ([1, 64] if args.quick else [1, 16, 64])
    args.hold_timeout = args.hold_timeout or (10.0 if args.quick else 180.0)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    started = time.monotonic()
    litellm_version = ensure_venv(args.litellm)
    workdir = HERE / ".cache" / f"run-{dt.datetime.now():%Y%m%d-%H%M%S}"
    workdir.mkdir(parents=True)
    log(f"LiteLLM {litellm_version}; logs and configs in {workdir}")
    results: dict = {
        "meta": {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": _machine(),
            "tollway_version": importlib.metadata.version("tollway"), "litellm_version": litellm_version,
            "seconds": args.seconds, "warmup": args.warmup, "repeats": args.repeats, "quick": args.quick,
            "concurrency": args.concurrency, "workers": args.workers, "prompt_tokens": PROMPT_TOKENS,
            "cost_per_request_usd": float(COST_PER_REQUEST), "load_limits": Limits.load().describe(),
        },
        "load": [], "rss": [], "correctness": [],
    }
    mock_port = free_port()
    with mock_service(mock_port, workdir / "mock.log").start() as mock:
        if not args.skip_load:
            for workers in args.workers:
                log(f"load, {workers} worker(s) per gateway")
                tollway, tollway_key = tollway_service(Limits.load(), mock_port, free_port(), workdir, workers, f"-{workers}w")
                litellm, litellm_key = litellm_service(Limits.load(), mock_port, free_port(), workdir, workers, f"-{workers}w")
                with tollway.start(), litellm.start():
                    gateways = {"tollway": (tollway, tollway_key), "litellm": (litellm, litellm_key)}
                    results["load"] += asyncio.run(_load_phase(mock, gateways, workers, args))
                    for name, (service, _key) in gateways.items():
                        results["rss"].append({"workers": workers, "target": name, "processes": service.meter.processes(),
                                               "peak_rss_mb": service.meter.peak_rss_mb()})
        if not args.skip_correctness:
            log("correctness: 50 concurrent requests against each limit")
            results["correctness"] = run_correctness(mock.base_url, mock_port, workdir, args.hold_timeout, log=log)
    results["meta"]["elapsed_s"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / "compare.json"
    raw.write_text(json.dumps(results, indent=2))
    markdown = write_markdown(results, args.out / "compare.md")
    if results["load"]:
        subprocess.run([str(LITELLM_PYTHON), str(HERE / "chart.py"), str(raw), str(args.out / "compare.png")], check=True)
    print(markdown)
    log(f"done in {results['meta']['elapsed_s']:.0f} s: {raw}, {args.out / 'compare.md'}, {args.out / 'compare.png'}")


if __name__ == "__main__":
    sys.exit(main())
