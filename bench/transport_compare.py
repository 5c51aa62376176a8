"""The transports suite of `overhead.py`: each upstream transport of `transports.py` driven
by the same loop, in a fresh child process per run, against one mock upstream; runs
alternate between transports (the order rotates every round) so machine noise spreads
evenly. Medians of the repeats, with ± half their range; the JSON keeps every run."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from transports import FEATURES, TRANSPORTS, available

HERE = Path(__file__).resolve().parent
FIELDS = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")


def _child(name: str, url: str, concurrency: int, seconds: float, stream: bool) -> dict:
    command = [sys.executable, str(HERE / "transports.py"), name, url, str(concurrency), str(seconds)]
    if stream:
        command.append("--stream")
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"transport {name} failed:\n{done.stderr[-2000:]}")
    result: dict = json.loads(done.stdout)
    return result


def _summary(runs: list[dict]) -> dict:
    out: dict = {"runs": runs, "errors": sum(run["errors"] for run in runs)}
    for field in FIELDS:
        values = [run[field] for run in runs if run.get(field) is not None]
        if values:
            out[field] = statistics.median(values)
            out[field + "_spread"] = (max(values) - min(values)) / 2
    return out


def compare(mock_port: int, concurrencies: list[int], repeats: int, seconds: float,
            names: list[str] | None = None) -> dict:
    """{mode: {concurrency: {transport: summary}}} for non-streaming and streaming chat."""
    url = f"http://127.0.0.1:{mock_port}/v1/chat/completions"
    chosen = [name for name in (names or TRANSPORTS) if available(name)]
    results: dict = {"skipped": [name for name in (names or TRANSPORTS) if name not in chosen]}
    for mode in ("non-stream", "stream"):
        by_concurrency: dict = {}
        for concurrency in concurrencies:
            runs: dict[str, list[dict]] = {name: [] for name in chosen}
            for round_ in range(repeats):
                order = chosen[round_ % len(chosen):] + chosen[:round_ % len(chosen)]
                for name in order:
                    runs[name].append(_child(name, url, concurrency, seconds, mode == "stream"))
            by_concurrency[concurrency] = {name: _summary(r) for name, r in runs.items()}
        results[mode] = by_concurrency
    return results


def report(results: dict) -> None:
    """The figures table, then the features table."""
    if results.get("skipped"):
        print(f"\n(transports not installed, skipped: {', '.join(results['skipped'])})")
    for mode in ("non-stream", "stream"):
        print(f"\nupstream transports, chat completions ({mode}), each in its own process against the mock;"
              " medians (± half range); Δ = against native")
        print(f"{'conc':>4} {'transport':>10} {'req/s':>14} {'p50 ms':>18} {'p99 ms':>18} {'Δp50 ms':>9}"
              f" {'CPU µs/req':>14} {'CPU ×native':>11} {'errors':>6}")
        for concurrency, by_name in results[mode].items():
            base = by_name.get("native", next(iter(by_name.values())))
            for name, r in by_name.items():
                cpu = r.get("cpu_us_per_req", 0)
                ratio = cpu / base["cpu_us_per_req"] if base.get("cpu_us_per_req") else 0
                print(f"{concurrency:>4} {name:>10} {r['rps']:>8.0f} ±{r['rps_spread']:<5.0f}"
                      f"{r['p50_ms']:>9.3f} ±{r['p50_ms_spread']:<8.3f}{r['p99_ms']:>9.2f} ±{r['p99_ms_spread']:<8.2f}"
                      f"{r['p50_ms'] - base['p50_ms']:>9.3f} {cpu:>7.0f} ±{r['cpu_us_per_req_spread']:<5.0f}"
                      f"{ratio:>11.2f} {r['errors']:>6}")
    names = list(TRANSPORTS)
    print("\nfeatures the gateway needs (details: transports.FEATURES, bench/README.md)")
    width = max(len(feature) for feature in FEATURES)
    print(f"  {'':<{width}} " + " ".join(f"{name:>10}" for name in names))
    for feature, by_name in FEATURES.items():
        print(f"  {feature:<{width}} " + " ".join(f"{by_name[name][0]:>10}" for name in names))
