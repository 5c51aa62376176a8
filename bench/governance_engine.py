"""Micro-benchmark: governance admit + settle through Enforcer + MemoryCounterStore.

A request meets every level (provider, model on provider, model on any provider, key,
key provider config, team, customer), each with a rate limit (both sides) and a budget,
some of them calendar aligned: 21 counters per request. A typical set-up (provider
request limit, key rate limit, team budget: 4 counters) is measured too, and with
request tags: two tags on each request with no tag limits configured (what tags cost
when only reported), then two tags each with a rate limit and a budget (+6 counters);
and with limit rules: twenty rules none of which matches (what configured rules cost a
request they do not bind), then a team x model rule and a per-end-user template over the
team (+3 counters), the requests naming 1,000 end users in turn.
Limits are high enough that nothing is denied, so every request takes the full path.

    python bench/governance_engine.py [--requests 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from dataclasses import replace
from types import MappingProxyType

from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.durations import Alignment, parse_duration
from tollway.governance.enforcer import Enforcer
from tollway.governance.engine import RequestFacts, hash_key
from tollway.governance.limit_rules import new_rule
from tollway.governance.model import (
    BudgetPolicy,
    Governed,
    Level,
    PolicySnapshot,
    ProviderConfigPolicy,
    RateLimitPolicy,
    Scope,
    TeamPolicy,
    VirtualKeyPolicy,
)

KEY_VALUE = "tw-bench-0123456789abcdefghijklmnopqrstuv"
HUGE = 10**15


def _governed(level: Level, id: str, budget_window: str = "1M", aligned: bool = False) -> Governed:
    budget = BudgetPolicy(f"b-{id}", HUGE, parse_duration(budget_window), Alignment() if aligned else None)
    rate = RateLimitPolicy(f"rl-{id}", HUGE, parse_duration("1h"), HUGE, parse_duration("1m"))
    return Governed(Scope(level, id, id), budget, rate)


def typical() -> PolicySnapshot:
    """A common set-up: a provider request limit, a key rate limit (both sides), a team budget."""
    provider = Governed(Scope(Level.PROVIDER, "openai", "openai"),
                        rate_limit=RateLimitPolicy("rl-openai", request_max_limit=HUGE, request_duration=parse_duration("1m")))
    key = VirtualKeyPolicy("vk", "bench", True, "team", None, frozenset(), MappingProxyType({}),
                           Governed(Scope(Level.VIRTUAL_KEY, "vk", "bench"),
                                    rate_limit=RateLimitPolicy("rl-vk", HUGE, parse_duration("1h"), HUGE, parse_duration("1m"))))
    team = TeamPolicy(None, Governed(Scope(Level.TEAM, "team", "team"),
                                     BudgetPolicy("b-team", HUGE, parse_duration("1M"), Alignment())))
    return PolicySnapshot(providers=MappingProxyType({"openai": provider}),
                          keys_by_hash=MappingProxyType({hash_key(KEY_VALUE): key}),
                          teams=MappingProxyType({"team": team}), version=1)


def hierarchy() -> PolicySnapshot:
    config = ProviderConfigPolicy("openai", 1.0, frozenset(), frozenset(), _governed(Level.PROVIDER_CONFIG, "vk/openai", "1d"))
    key = VirtualKeyPolicy("vk", "bench", True, "team", None, frozenset({"gpt-4o-mini"}),
                           MappingProxyType({"openai": config}), _governed(Level.VIRTUAL_KEY, "vk", "1d"))
    return PolicySnapshot(
        providers=MappingProxyType({"openai": _governed(Level.PROVIDER, "openai", "1M", aligned=True)}),
        model_configs=MappingProxyType({
            ("gpt-4o-mini", "openai"): _governed(Level.MODEL, "openai/gpt-4o-mini", "1w"),
            ("gpt-4o-mini", None): _governed(Level.MODEL, "gpt-4o-mini", "1w", aligned=True),
        }),
        keys_by_hash=MappingProxyType({hash_key(KEY_VALUE): key}),
        teams=MappingProxyType({"team": TeamPolicy("customer", _governed(Level.TEAM, "team", "1M", aligned=True))}),
        customers=MappingProxyType({"customer": _governed(Level.CUSTOMER, "customer", "1Y", aligned=True)}),
        version=1,
    )


def tagged(snapshot: PolicySnapshot) -> PolicySnapshot:
    """``snapshot`` with limits (a rate limit and a budget) on the tags the requests carry."""
    return replace(snapshot, tags=MappingProxyType({tag: _governed(Level.TAG, tag, "1d") for tag in TAGS}))


TAGS = ("support", "cost-centre:42")


def ruled(snapshot: PolicySnapshot, matching: bool) -> PolicySnapshot:
    """``snapshot`` with limit rules: twenty on other teams (``matching`` False), or a rule
    on the key's team and model and a per-end-user template over the team."""
    rate = RateLimitPolicy("rl-rule", request_max_limit=HUGE, request_duration=parse_duration("1m"))
    budget = BudgetPolicy("b-rule", HUGE, parse_duration("1d"))
    if not matching:
        rules = [new_rule(f"other-{i}", {"team": [f"team-{i}"], "model": ["gpt-4o"]}, rate_limit=rate)
                 for i in range(20)]
    else:
        rules = [new_rule("team-model", {"team": ["team"], "model": ["gpt-4o-mini"]}, rate_limit=rate),
                 new_rule("team-users", {"team": ["team"]}, per=["end_user"], budget=budget, rate_limit=rate)]
    return replace(snapshot, limit_rules=MappingProxyType({rule.name: rule for rule in rules}))


async def run(requests: int) -> None:
    for title, snapshot, tags, users in (
            ("full hierarchy", hierarchy(), (), 0), ("typical set-up", typical(), (), 0),
            ("typical, 2 tags, no tag limits", typical(), TAGS, 0),
            ("typical, 2 tags with limits", tagged(typical()), TAGS, 0),
            ("typical, 20 limit rules, none matching", ruled(typical(), False), (), 0),
            ("typical, team x model rule + per-end-user rule, 1,000 users", ruled(typical(), True), (), 1_000)):
        await measure(title, snapshot, requests, tags, users)


async def measure(title: str, snapshot: PolicySnapshot, requests: int, tags: tuple[str, ...] = (),
                  users: int = 0) -> None:
    enforcer = Enforcer(MemoryCounterStore(), lambda: time.time_ns() // 1_000_000)
    facts = RequestFacts("openai", "gpt-4o-mini", hash_key(KEY_VALUE), 1_200, 450_000, tags=tags)
    names = [f"user-{index}" for index in range(users)]
    for index in range(1_000):  # warm the memo and the counters
        facts.end_user = names[index % users] if users else None
        admission = await enforcer.admit(snapshot, facts)
        await enforcer.settle(admission.reservation, 1_100, 400_000)
    admit_ns, settle_ns = [], []
    gc.collect()
    started = time.perf_counter_ns()
    for index in range(requests):
        facts.end_user = names[index % users] if users else None
        t0 = time.perf_counter_ns()
        admission = await enforcer.admit(snapshot, facts)
        t1 = time.perf_counter_ns()
        await enforcer.settle(admission.reservation, 1_100, 400_000)
        t2 = time.perf_counter_ns()
        assert admission.allowed
        admit_ns.append(t1 - t0)
        settle_ns.append(t2 - t1)
    elapsed = (time.perf_counter_ns() - started) / 1e9
    total = [a + s for a, s in zip(admit_ns, settle_ns)]
    counters = len(admission.reservation.plan.checks)
    print(f"{title}: {requests} requests, {counters} counters each")
    for name, samples in (("admit+settle", total), ("admit", admit_ns), ("settle", settle_ns)):
        print(f"  {name:13s} p50 {_pct(samples, 50):7.1f} µs   p99 {_pct(samples, 99):7.1f} µs")
    print(f"  throughput    {requests / elapsed:,.0f} requests/s (one core, timing included)")


def _pct(samples: list[int], pct: int) -> float:
    return statistics.quantiles(samples, n=100)[pct - 1] / 1000 if pct < 100 else max(samples) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    asyncio.run(run(parser.parse_args().requests))


if __name__ == "__main__":
    main()
