"""Latency against throughput for both gateways (and the mock directly), from compare.json.

Runs with the cache venv's Python, where matplotlib lives (never a Tollway dependency):

    bench/.cache/litellm-venv/bin/python bench/chart.py bench/results/compare.json bench/results/compare.png
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"tollway": "#1f77b4", "litellm": "#d62728", "direct": "#7f7f7f"}
LABELS = {"tollway": "Tollway", "litellm": "LiteLLM proxy", "direct": "mock directly"}


def main(source: str, target: str) -> None:
    with open(source) as file:
        results = json.load(file)
    load = results["load"]
    modes = [m for m in ("json", "stream") if any(p["mode"] == m for p in load)]
    workers = sorted({p["workers"] for p in load})
    fig, axes = plt.subplots(len(modes), 2, figsize=(13, 5.2 * len(modes)), squeeze=False)
    for row, mode in enumerate(modes):
        for col, metric in enumerate(("p50_ms", "p99_ms")):
            ax = axes[row][col]
            for name in ("direct", "tollway", "litellm"):
                for w in workers:
                    pts = sorted((p for p in load if p["mode"] == mode and p["target"] == name and p["workers"] == w),
                                 key=lambda p: p["concurrency"])
                    if not pts or (name == "direct" and w != workers[0]):
                        continue
                    xs = [p["summary"]["rps"] for p in pts]
                    ys = [p["summary"][metric] for p in pts]
                    xerr = [[p["summary"]["rps"] - p["summary"]["rps_min"] for p in pts],
                            [p["summary"]["rps_max"] - p["summary"]["rps"] for p in pts]]
                    yerr = [[p["summary"][metric] - p["summary"][metric + "_min"] for p in pts],
                            [p["summary"][metric + "_max"] - p["summary"][metric] for p in pts]]
                    style = "-" if w == 1 else "--"
                    marker = "o" if w == 1 else "s"
                    label = LABELS[name] + ("" if name == "direct" else f", {w} worker{'s' if w > 1 else ''}")
                    ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt=marker + style, color=COLORS[name], label=label,
                                capsize=3, alpha=0.9 if w == 1 else 0.6)
                    for p, x, y in zip(pts, xs, ys, strict=True):
                        ax.annotate(f"c={p['concurrency']}", (x, y), textcoords="offset points", xytext=(4, 4),
                                    fontsize=7, color=COLORS[name])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("throughput (successful requests/s, log)")
            ax.set_ylabel(f"{metric.split('_')[0]} latency (ms, log)")
            ax.set_title(f"{'streaming' if mode == 'stream' else 'non-streaming'} chat completions: "
                         f"{metric.split('_')[0]} latency vs throughput")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    meta = results["meta"]
    fig.suptitle(f"Tollway {meta['tollway_version']} vs LiteLLM {meta['litellm_version']} (governance on), "
                 f"{meta['machine']['cores']} cores, medians of {meta['repeats']} × {meta['seconds']} s, "
                 f"bars = min–max; concurrency {'/'.join(str(c) for c in meta['concurrency'])}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
