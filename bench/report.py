"""Markdown report of a comparison run (bench/results/compare.md) from its raw JSON.

    .venv/bin/python bench/report.py bench/results/compare.json   # re-render the tables
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ENFORCED = """\
What each side enforced (the same numbers at the same levels; load runs use limits no run reaches):

| level | Tollway (its own config file) | LiteLLM proxy (offline: no database) |
|---|---|---|
| model | `governance.model_configs` for `gpt-4o-mini` on provider `mock`: request + token rate limit per `1m` | deployment `rpm` / `tpm` with `router_settings.optional_pre_call_checks: [enforce_model_rate_limits]` (per clock minute) |
| provider | `providers.mock.budget` (USD per `1d`) | `router_settings.provider_budget_config.openai` (USD per `1d`) |
| key: rate | virtual key `rate_limit`: request + token limit per `1m` (`enforce_virtual_keys: true`) | `custom_auth` hook (bench/litellm_auth.py) returns the key with `rpm_limit` / `tpm_limit` |
| key: budget | virtual key `budget` (USD per `1d`) | same hook: the key's `model_max_budget` for `gpt-4o-mini` (`litellm_settings.enable_post_custom_auth_checks: true`) |
| pricing | `pricing: mock/gpt-4o-mini {input: 1.0, output: 2.0}` USD/M tokens | deployment `input_cost_per_token: 1e-6`, `output_cost_per_token: 2e-6` |
| other | request log to SQLite on (the default), Prometheus metrics | `LITELLM_LOCAL_MODEL_COST_MAP=True`, random master key, `LITELLM_LOG=ERROR` (no access log) |

With two workers each gateway keeps its counters in memory per worker (Tollway `counters: memory`,
LiteLLM without Redis): fine for throughput, not for exact shared limits.
"""


NOTES = """\
Reading the results:

- Two workers: the load generator and the mock share the machine's cores with the gateway.
  At Tollway's rates they take most of what one Tollway worker leaves, so on 2 cores a second
  Tollway worker finds no idle core; LiteLLM, CPU-bound near 100 req/s per worker, still gains.
- LiteLLM's model `rpm` (router pre-call check) holds a refused request and retries it after
  the Retry-After of 60 s (router retries, twice by default): those answers come after one or
  two minutes, some as 200 in the next clock minute (within a per-minute limit), the rest 429.
- LiteLLM's budgets are checked before the call against spend recorded after earlier calls
  finish, so every request that arrives while others are in flight passes the check: the
  overshoot grows with the requests in flight.
  Tollway reserves the estimated cost (prompt bytes / 4 and max_tokens) before forwarding.
"""


def _fmt(summary: dict, field: str, digits: int = 0) -> str:
    if field not in summary:
        return "–"
    value, low, high = summary[field], summary[field + "_min"], summary[field + "_max"]
    half = (high - low) / 2
    return f"{value:,.{digits}f} ±{half:,.{digits}f}"


def _ratio(a: float | None, b: float | None, digits: int = 2) -> str:
    if a is None or b in (None, 0):
        return "–"
    return f"{a / b:.{digits}f}"


def _index(load: list[dict]) -> dict:
    return {(p["workers"], p["mode"], p["concurrency"], p["target"]): p["summary"] for p in load}


def headline(results: dict) -> list[str]:
    idx = _index(results["load"])
    lines = ["## Targets", "", "| target | measured | goal |", "|---|---|---|"]
    for mode in ("json", "stream"):
        t, lt = idx.get((1, mode, 64, "tollway")), idx.get((1, mode, 64, "litellm"))
        if t and lt:
            lines.append(f"| throughput Tollway/LiteLLM, c=64, 1 worker, {mode} | "
                         f"**{_ratio(t['rps'], lt['rps'], 1)}×** ({t['rps']:,.0f} vs {lt['rps']:,.0f} req/s) | ≥ 20× |")
    for mode in ("json", "stream"):
        d, t, lt = (idx.get((1, mode, 1, name)) for name in ("direct", "tollway", "litellm"))
        if d and t and lt:
            ta, la = t["p50_ms"] - d["p50_ms"], lt["p50_ms"] - d["p50_ms"]
            lines.append(f"| added p50 Tollway/LiteLLM, c=1, 1 worker, {mode} | "
                         f"**{_ratio(ta, la, 3)}** ({ta * 1000:,.0f} µs vs {la * 1000:,.0f} µs) | ≤ 0.1 |")
    for row in results.get("correctness", []):
        if row["gateway"] == "tollway":
            goal = "0 beyond the limit" if "spent_usd" not in row else "no overshoot beyond in-flight estimates"
            lines.append(f"| {row['scenario']} (Tollway) | {_correctness_cell(row)} | {goal} |")
    return lines + [""]


def _correctness_cell(row: dict) -> str:
    text = f"{row['upstream_requests']} of {row['concurrent']} through (allowed {row['allowed']})"
    if row.get("first_window_upstream", row["upstream_requests"]) != row["upstream_requests"]:
        text += f", {row['first_window_upstream']} of them in the first minute"
    if "spent_usd" in row:
        text += f", spent ${row['spent_usd']:.6f} of ${row['budget_usd']:.6f} (overshoot {row['overshoot_pct']:.0f} %)"
    return text


def load_tables(results: dict) -> list[str]:
    idx = _index(results["load"])
    lines = ["## Throughput and latency", "",
             "Medians of the repeats ± half their range. *added* = gateway p50 − direct-to-mock p50 in the same phase. "
             "Ratios are Tollway/LiteLLM.", "",
             "| workers | mode | c | direct req/s | Tollway req/s | LiteLLM req/s | req/s ratio | Tollway p50 ms | "
             "LiteLLM p50 ms | added p50 T ms | added p50 L ms | added ratio | Tollway p99 ms | LiteLLM p99 ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(p["workers"], p["mode"], p["concurrency"]) for p in results["load"]},
                  key=lambda k: (k[0], k[1] != "json", k[2]))
    for workers, mode, c in keys:
        d, t, lt = (idx.get((workers, mode, c, n), {}) for n in ("direct", "tollway", "litellm"))
        ta = t.get("p50_ms", 0) - d.get("p50_ms", 0)
        la = lt.get("p50_ms", 0) - d.get("p50_ms", 0)
        lines.append(f"| {workers} | {mode} | {c} | {_fmt(d, 'rps')} | {_fmt(t, 'rps')} | {_fmt(lt, 'rps')} | "
                     f"{_ratio(t.get('rps'), lt.get('rps'), 1)} | {_fmt(t, 'p50_ms', 2)} | {_fmt(lt, 'p50_ms', 2)} | "
                     f"{ta:.3f} | {la:.3f} | {_ratio(ta, la, 3)} | {_fmt(t, 'p99_ms', 2)} | {_fmt(lt, 'p99_ms', 2)} |")
    lines += ["", "## Machine cost", "",
              "CPU seconds of the gateway's process tree (server, workers, helpers; from /proc/<pid>/stat before and "
              "after each run) per 1,000 successful requests.", "",
              "| workers | mode | c | Tollway CPU s/1k | LiteLLM CPU s/1k | ratio | Tollway errors | LiteLLM errors |",
              "|---|---|---|---|---|---|---|---|"]
    for workers, mode, c in keys:
        t, lt = (idx.get((workers, mode, c, n), {}) for n in ("tollway", "litellm"))
        lines.append(f"| {workers} | {mode} | {c} | {_fmt(t, 'cpu_s_per_1k', 3)} | {_fmt(lt, 'cpu_s_per_1k', 3)} | "
                     f"{_ratio(t.get('cpu_s_per_1k'), lt.get('cpu_s_per_1k'), 3)} | {t.get('errors', '–')} | "
                     f"{lt.get('errors', '–')} |")
    if results.get("rss"):
        lines += ["", "Peak RSS after the phase (VmHWM summed over the live processes of the gateway):", "",
                  "| workers | Tollway MB (processes) | LiteLLM MB (processes) | ratio |", "|---|---|---|---|"]
        rss = {(r["workers"], r["target"]): r for r in results["rss"]}
        for workers in sorted({r["workers"] for r in results["rss"]}):
            t, lt = rss.get((workers, "tollway")), rss.get((workers, "litellm"))
            if t and lt:
                lines.append(f"| {workers} | {t['peak_rss_mb']:.0f} ({t['processes']}) | {lt['peak_rss_mb']:.0f} "
                             f"({lt['processes']}) | {_ratio(t['peak_rss_mb'], lt['peak_rss_mb'])} |")
    return lines + [""]


def correctness_table(results: dict) -> list[str]:
    rows = results.get("correctness", [])
    if not rows:
        return []
    lines = ["## Correctness under load", "",
             "Each scenario: a fresh gateway with that one limit, 50 requests sent at the same moment. *through* = "
             "requests that reached the mock upstream (its own counter); spend = through × the exact cost per request "
             f"(${results['meta']['cost_per_request_usd']:.6f}); *reported* = the gateway's own spend figure "
             "(Tollway: /metrics `tollway_cost_usd_total`; LiteLLM: sum of `x-litellm-response-cost`). "
             "*1st min* = of those, how many within the limit's first minute (requests a gateway held and let through "
             "in a later minute are within a per-minute limit); *beyond* = over the limit (first minute for rate "
             "limits, all for budgets); *slowest* = the longest a client waited for its answer; "
             "*next* = status of one more request half a second after the burst.", "",
             "| scenario | gateway | allowed | through | 1st min | beyond | statuses | slowest s | spent / budget USD | "
             "overshoot | reported USD | next |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        spend = (f"{row['spent_usd']:.6f} / {row['budget_usd']:.6f}" if "spent_usd" in row else "–")
        over = (f"{row['overshoot_usd']:.6f} ({row['overshoot_pct']:.0f} %)" if "spent_usd" in row else "–")
        reported = f"{row['gateway_reported_spend_usd']:.6f}" if "gateway_reported_spend_usd" in row else "–"
        statuses = ", ".join(f"{k}×{v}" for k, v in row["statuses"].items())
        lines.append(f"| {row['description']} | {row['gateway']} | {row['allowed']} | {row['upstream_requests']} | "
                     f"{row.get('first_window_upstream', '–')} | {row['beyond_limit']} | {statuses} | "
                     f"{row.get('slowest_answer_s', '–')} | {spend} | {over} | {reported} | {row['next_request_status']} |")
    denials = [(r["scenario"], r["gateway"], r["sample_denial"]) for r in rows if r.get("sample_denial")]
    if denials:
        lines += ["", "<details><summary>sample denial bodies</summary>", ""]
        lines += [f"- {s} / {g}: `{d[:240]}`" for s, g, d in denials]
        lines += ["", "</details>"]
    return lines + [""]


def render(results: dict) -> str:
    meta = results["meta"]
    machine = meta["machine"]
    lines = [
        "# Tollway vs LiteLLM proxy, governance on", "",
        f"{meta['date']} · {machine['cpu']}, {machine['cores']} cores · Python {machine['python']} · "
        f"Tollway {meta['tollway_version']} · LiteLLM {meta['litellm_version']} · "
        f"{meta['repeats']} × {meta['seconds']} s per point{' (quick run)' if meta.get('quick') else ''} · "
        f"run took {meta.get('elapsed_s', 0):.0f} s", "",
        f"Load: chat completions, ≈1 KB prompt ({meta['prompt_tokens']} tokens), max_tokens 16, closed loop; "
        "the mock upstream answers at once (no simulated latency), so the figures show the gateways' own cost. "
        "Gateway, mock and load generator share the machine's cores.", "",
    ]
    lines += headline(results) + load_tables(results) + correctness_table(results) + [NOTES, ENFORCED]
    return "\n".join(lines)


def write_markdown(results: dict, path: Path) -> str:
    text = render(results)
    path.write_text(text)
    return text


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results" / "compare.json")
    print(write_markdown(json.loads(source.read_text()), source.with_suffix(".md")))
