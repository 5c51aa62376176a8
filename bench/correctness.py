"""Correctness under load: the same limit scenarios on both gateways.

Each scenario starts a fresh gateway with one limit, fires 50 requests at the same moment
and counts what got through. Ground truth is the mock upstream's own request counter (a
request that reached the provider is one that costs money); spend is that count times the
exact per-request cost (the mock's token rules and the pricing set on both gateways), and
each gateway's own spend figure is recorded beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from gateways import COST_PER_REQUEST, MODEL, Limits, Service, payload
from litellm_side import litellm_service, litellm_spend_usd
from loadgen import burst, free_port
from tollway_side import ROUTED_MODEL, tollway_service, tollway_spend_usd

CONCURRENT = 50
RATE_LIMIT = 10
BUDGET_REQUESTS = 5
# "A budget sized for 5 requests": room for 5 and half of a 6th, so 5 fit and a 6th does not.
BUDGET_USD = COST_PER_REQUEST * (BUDGET_REQUESTS * 2 + 1) / 2


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    limits: Limits
    kind: str  # "requests" or "budget"

    @property
    def allowed(self) -> int:
        return RATE_LIMIT if self.kind == "requests" else BUDGET_REQUESTS


SCENARIOS = [
    Scenario("model_rpm", f"{RATE_LIMIT} requests/minute on the model", Limits(model_rpm=RATE_LIMIT), "requests"),
    Scenario("key_rpm", f"{RATE_LIMIT} requests/minute on the key", Limits(key_rpm=RATE_LIMIT), "requests"),
    Scenario("provider_budget", f"provider budget for {BUDGET_REQUESTS} requests (${BUDGET_USD:.6f}/day)",
             Limits(provider_budget_usd=BUDGET_USD), "budget"),
    Scenario("key_budget", f"key budget for {BUDGET_REQUESTS} requests (${BUDGET_USD:.6f}/day)",
             Limits(key_budget_usd=BUDGET_USD), "budget"),
]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def _post(url: str, body: bytes = b"{}") -> bytes:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def _upstream_requests(mock_url: str) -> int:
    return json.loads(_get(mock_url + "/_mock/stats"))["requests"]


def _wait_for_fresh_minute() -> float:
    """LiteLLM counts requests per clock minute ("%H-%M" keys): keep a burst inside one minute."""
    second = time.time() % 60
    if second > 45:
        time.sleep(61 - second)
    return time.time() % 60


def _sample_denial(responses: list[tuple]) -> str | None:
    for status, _headers, body, _seconds in responses:
        if status != 200:
            return f"{status} {body[:300].decode(errors='replace')}"
    return None


async def _watch_upstream(mock_url: str, before: int, timeline: list[tuple[float, int]], stop: asyncio.Event) -> None:
    """Poll the mock's request counter: (seconds since the burst, requests that reached it)."""
    started = time.monotonic()
    while not stop.is_set():
        count = await asyncio.to_thread(_upstream_requests, mock_url)
        timeline.append((round(time.monotonic() - started, 2), count - before))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def _run_one(gateway: str, service: Service, key: str, mock_url: str, scenario: Scenario,
                   hold_timeout_s: float) -> dict:
    model = ROUTED_MODEL if gateway == "tollway" else MODEL
    url = service.base_url + "/v1/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    body = payload(model, stream=False)
    second = _wait_for_fresh_minute() if scenario.kind == "requests" else time.time() % 60
    before = _upstream_requests(mock_url)
    timeline: list[tuple[float, int]] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch_upstream(mock_url, before, timeline, stop))
    responses = await burst(url, headers, body, CONCURRENT, hold_timeout_s)
    stop.set()
    await watcher
    upstream = _upstream_requests(mock_url) - before
    # Within the limit's first window (a minute): the last reading taken before 59 s.
    first_window = max((count for at, count in timeline if at < 59), default=upstream)
    if max(seconds for *_rest, seconds in responses) < 59:
        first_window = upstream
    await asyncio.sleep(0.5)  # let post-call accounting finish, then ask once more
    after = await burst(url, headers, body, 1, min(hold_timeout_s, 10))
    statuses: dict[str, int] = {}
    for status, _h, _b, _s in responses:
        label = "held (no answer)" if status == 0 else str(status)
        statuses[label] = statuses.get(label, 0) + 1
    slowest = max(seconds for *_rest, seconds in responses)
    counted = first_window if scenario.kind == "requests" else upstream
    result = {
        "gateway": gateway, "scenario": scenario.name, "description": scenario.description,
        "limits": scenario.limits.describe(), "concurrent": CONCURRENT, "allowed": scenario.allowed,
        "succeeded": statuses.get("200", 0), "upstream_requests": upstream, "first_window_upstream": first_window,
        "statuses": statuses, "beyond_limit": max(0, counted - scenario.allowed),
        "slowest_answer_s": round(slowest, 2), "hold_timeout_s": hold_timeout_s,
        "start_second_of_minute": round(second, 1), "upstream_timeline": _thin(timeline),
        "next_request_status": after[0][0], "sample_denial": _sample_denial(responses),
    }
    if scenario.kind == "budget":
        spent = COST_PER_REQUEST * upstream
        budget = Decimal(str(scenario.limits.provider_budget_usd or scenario.limits.key_budget_usd))
        result |= {"budget_usd": float(budget), "spent_usd": float(spent), "cost_per_request_usd": float(COST_PER_REQUEST),
                   "overshoot_usd": float(max(Decimal(0), spent - budget)),
                   "overshoot_pct": float(max(Decimal(0), spent - budget) / budget * 100)}
        if gateway == "tollway":
            result["gateway_reported_spend_usd"] = tollway_spend_usd(_get(service.base_url + "/metrics").decode())
        else:
            result["gateway_reported_spend_usd"] = litellm_spend_usd(responses)
    return result


def _thin(timeline: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """Keep the readings where the count changed (and the last one)."""
    kept = [point for i, point in enumerate(timeline) if i == 0 or point[1] != timeline[i - 1][1]]
    if timeline and (not kept or kept[-1] != timeline[-1]):
        kept.append(timeline[-1])
    return kept


def run_correctness(mock_url: str, mock_port: int, workdir: Path, hold_timeout_s: float = 180,
                    log=print) -> list[dict]:
    """Every scenario on Tollway then LiteLLM, each on a freshly started gateway.

    A request the gateway holds (LiteLLM's router retries a rate-limited request after the
    Retry-After of 60 s, twice by default) is waited for up to `hold_timeout_s`.
    """
    results = []
    for scenario in SCENARIOS:
        for gateway in ("tollway", "litellm"):
            factory = tollway_service if gateway == "tollway" else litellm_service
            service, key = factory(scenario.limits, mock_port, free_port(), workdir / "correctness",
                                   tag=f"-{scenario.name}")
            with service.start():
                result = asyncio.run(_run_one(gateway, service, key, mock_url, scenario, hold_timeout_s))
            log(f"  {scenario.name:<16} {gateway:<8} through {result['upstream_requests']:>2}/{CONCURRENT} "
                f"(first minute {result['first_window_upstream']}, allowed {scenario.allowed}) "
                f"statuses {result['statuses']} slowest {result['slowest_answer_s']} s"
                + (f" spent ${result['spent_usd']:.6f} of ${result['budget_usd']:.6f}" if "spent_usd" in result else ""))
            results.append(result)
    return results
