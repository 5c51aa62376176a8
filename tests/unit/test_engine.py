"""The engine: every decision, the evaluation order (SPEC §3), headers and error bodies."""

from __future__ import annotations

import orjson
import pytest

from tests import factories as f
from tollway.denials import error_body
from tollway.governance.counters.base import AcquireResult, CounterReading, SettleOp
from tollway.governance.counters.memory import MemoryCounterStore
from tollway.governance.decisions import Decision, Denial, denial_headers, iso_utc, reset_text
from tollway.governance.durations import Alignment, parse_duration
from tollway.governance.enforcer import Enforcer
from tollway.governance.engine import (
    IN_FLIGHT_RETRY,
    Allowed,
    LimitCheck,
    Plan,
    acquire_ops,
    decide,
    hash_key,
    plan,
    release_ops,
    settle_ops,
    static_checks,
)
from tollway.governance.model import Kind, Level, PolicySnapshot, Scope

NOW = f.at(2026, 11, 15, 12)
VK = f.key_value("search")


class Clock:
    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def full_hierarchy(**key_options) -> PolicySnapshot:
    """Every level with both rate-limit sides and a budget; generous limits everywhere."""
    def rl(name: str):
        return f.rate_limit(requests=1000, tokens=1_000_000, id=f"rl-{name}")

    def bg(name: str):
        return f.budget(1000, "1M", id=f"b-{name}")

    vk = f.virtual_key(
        "vk-search", name="search service", team_id="search",
        provider_configs=[f.provider_config("openai", rate_limit=rl("pc"), budget=bg("pc"))],
        rate_limit=rl("key"), budget=bg("key"), **key_options,
    )
    return f.snapshot(
        providers=[f.provider("openai", rate_limit=rl("provider"), budget=bg("provider"))],
        model_configs=[
            f.model_config("gpt-4o-mini", "openai", rate_limit=rl("mp"), budget=bg("mp")),
            f.model_config("gpt-4o-mini", rate_limit=rl("m"), budget=bg("m")),
        ],
        keys={VK: vk},
        teams=[f.team("search", name="Search", customer_id="acme", rate_limit=rl("team"), budget=bg("team"))],
        customers=[f.customer("acme", name="Acme", rate_limit=rl("customer"), budget=bg("customer"))],
    )


# --- identity -------------------------------------------------------------------------

def test_keys_are_found_by_hash_only() -> None:
    snap = full_hierarchy()
    assert hash_key(VK) in snap.keys_by_hash and VK not in snap.keys_by_hash
    assert snap.keys_by_hash.get(hash_key(VK)).id == "vk-search"
    assert snap.keys_by_hash.get(hash_key(VK + "x")) is None


def _identity_cases():
    vk = f.virtual_key("vk", name="svc", allowed_models=["gpt-4o-mini", "anthropic/claude-3"],
                       provider_configs=[f.provider_config("openai"), f.provider_config("anthropic"),
                                         f.provider_config("local", allowed_models=["llama"])])
    off = f.virtual_key("off", name="old", active=False)
    snap = f.snapshot(keys={f.key_value("vk"): vk, f.key_value("off"): off})
    enforced = f.snapshot(keys={f.key_value("vk"): vk}, enforce_virtual_keys=True)
    k = f.key_value("vk")
    return [
        ("no key while enforced", enforced, f.facts(), Decision.VIRTUAL_KEY_REQUIRED, 401, None),
        ("unknown key", snap, f.facts(key=f.key_value("nope")), Decision.VIRTUAL_KEY_NOT_FOUND, 401, None),
        ("inactive key", snap, f.facts(key=f.key_value("off")), Decision.VIRTUAL_KEY_BLOCKED, 403, "off"),
        ("provider not configured", snap, f.facts("azure", key=k), Decision.PROVIDER_BLOCKED, 403, "vk"),
        ("model not allowed", snap, f.facts("openai", "gpt-4o", key=k), Decision.MODEL_BLOCKED, 403, "vk"),
        ("provider/model entry for another provider", snap, f.facts("openai", "claude-3", key=k),
         Decision.MODEL_BLOCKED, 403, "vk"),
        ("provider config's own model list", snap, f.facts("local", "gpt-4o-mini", key=k),
         Decision.MODEL_BLOCKED, 403, "vk/local"),
    ]


IDENTITY_CASES = _identity_cases()


@pytest.mark.parametrize(("case", "snap", "request_facts", "decision", "status", "scope_id"),
                         IDENTITY_CASES, ids=[c[0] for c in IDENTITY_CASES])
def test_identity_denials(case, snap, request_facts, decision: Decision, status: int, scope_id: str | None) -> None:
    denial = plan(snap, request_facts)
    assert isinstance(denial, Denial)
    assert (denial.decision, denial.decision.status) == (decision, status)
    assert (denial.scope.id if denial.scope else None) == scope_id
    assert denial_headers(denial) == []
    assert f.key_value("nope") not in denial.message


@pytest.mark.parametrize(
    ("allowed", "provider", "model", "ok"),
    [
        ((), "openai", "anything", True),
        (("gpt-4o-mini",), "openai", "gpt-4o-mini", True),
        (("gpt-4o-mini",), "local", "gpt-4o-mini", True),
        (("local/gpt-4o-mini",), "local", "gpt-4o-mini", True),
        (("local/gpt-4o-mini",), "openai", "gpt-4o-mini", False),
        (("gpt-4o",), "openai", "gpt-4o-mini", False),
    ],
)
def test_allowed_models_match_model_or_provider_slash_model(allowed, provider: str, model: str, ok: bool) -> None:
    snap = f.snapshot(keys={VK: f.virtual_key(allowed_models=allowed)})
    assert isinstance(plan(snap, f.facts(provider, model, VK)), Plan) is ok


def test_a_key_without_provider_configs_may_use_any_provider() -> None:
    snap = f.snapshot(keys={VK: f.virtual_key()})
    assert isinstance(plan(snap, f.facts("whatever", key=VK)), Plan)


def test_no_key_is_fine_when_keys_are_not_enforced_and_provider_limits_still_apply() -> None:
    snap = f.snapshot(providers=[f.provider("openai", rate_limit=f.rate_limit(requests=5))])
    planned = plan(snap, f.facts())
    assert isinstance(planned, Plan)
    assert [(c.scope.level, c.kind) for c in planned.checks] == [(Level.PROVIDER, Kind.REQUESTS)]
    assert (planned.key, planned.team_id, planned.customer_id) == (None, None, None)


async def test_an_invalid_key_learns_nothing_about_exhausted_limits() -> None:
    snap = f.snapshot(providers=[f.provider("openai", rate_limit=f.rate_limit(requests=1))])
    enforcer = Enforcer(MemoryCounterStore(), Clock())
    assert (await enforcer.admit(snap, f.facts())).allowed
    admission = await enforcer.admit(snap, f.facts(key=f.key_value("stolen")))
    assert admission.denial.decision is Decision.VIRTUAL_KEY_NOT_FOUND
    assert admission.denial.limit is None and b"limit\":null" in error_body(admission.denial)


# --- which limits, in which order -------------------------------------------------------

def test_every_level_is_checked_in_the_specified_order() -> None:
    planned = plan(full_hierarchy(), f.facts(key=VK, tokens=321, cost_nano=654))
    assert isinstance(planned, Plan)
    rate = [Kind.REQUESTS, Kind.TOKENS]
    expected = (
        [("provider", k) for k in rate] + [("provider", Kind.BUDGET)]
        + [("mp", k) for k in rate] + [("mp", Kind.BUDGET)]
        + [("m", k) for k in rate] + [("m", Kind.BUDGET)]
        + [(owner, k) for owner in ("key", "pc", "team", "customer") for k in rate]
        + [(owner, Kind.BUDGET) for owner in ("pc", "key", "team", "customer")]
    )
    def owner(check: LimitCheck) -> str:
        return check.counter.split(":", 1)[1].split("-", 1)[1]
    assert [(owner(c), c.kind) for c in planned.checks] == expected
    amounts = {Kind.REQUESTS: 1, Kind.TOKENS: 321, Kind.BUDGET: 654}
    assert list(planned.amounts) == [amounts[c.kind] for c in planned.checks]
    assert (planned.key.id, planned.team_id, planned.customer_id) == ("vk-search", "search", "acme")


def test_a_key_of_a_customer_skips_the_team_level() -> None:
    vk = f.virtual_key(customer_id="acme", budget=f.budget(1, id="b-key"))
    snap = f.snapshot(keys={VK: vk}, customers=[f.customer("acme", budget=f.budget(5, id="b-acme"))])
    planned = plan(snap, f.facts(key=VK))
    assert [c.counter for c in planned.checks] == ["b:b-key", "b:b-acme"]
    assert (planned.team_id, planned.customer_id) == (None, "acme")


def test_static_checks_depend_only_on_key_provider_and_model() -> None:
    snap = full_hierarchy()
    key = snap.keys_by_hash.get(hash_key(VK))
    assert static_checks(snap, key, "openai", "gpt-4o-mini") == plan(snap, f.facts(key=VK)).checks
    assert len(static_checks(snap, None, "openai", "gpt-4o-mini")) == 9
    assert len(static_checks(snap, None, "anthropic", "gpt-4o-mini")) == 3  # model-only config


def test_plan_reports_the_provider_keys_the_key_may_use() -> None:
    vk = f.virtual_key(provider_configs=[f.provider_config("openai", allowed_keys=["k1", "k2"])])
    planned = plan(f.snapshot(keys={VK: vk}), f.facts(key=VK))
    assert planned.allowed_provider_keys == frozenset({"k1", "k2"})


async def _enforcer_with(snap: PolicySnapshot, full: list[str]) -> Enforcer:
    """An enforcer whose counters named in ``full`` are used up to their limit."""
    store = MemoryCounterStore()
    planned = plan(snap, f.facts(key=VK))
    for check in planned.checks:
        if check.counter in full:
            (op,) = acquire_ops(Plan((check,), (0,)), NOW)
            await store.settle([SettleOp(check.counter, 0, check.limit, op.floor_ms, op.reset_to_ms)])
    return Enforcer(store, Clock())


@pytest.mark.parametrize(
    ("full", "denier", "decision"),
    [
        (["rr:rl-provider", "rr:rl-key"], "openai", Decision.REQUEST_LIMITED),
        (["rt:rl-provider"], "openai", Decision.TOKEN_LIMITED),
        (["b:b-provider", "rr:rl-mp"], "openai", Decision.BUDGET_EXCEEDED),
        (["rr:rl-mp", "rr:rl-m"], "openai/gpt-4o-mini", Decision.REQUEST_LIMITED),
        (["b:b-m", "rr:rl-key"], "gpt-4o-mini", Decision.BUDGET_EXCEEDED),
        (["rt:rl-key", "rr:rl-pc"], "vk-search", Decision.TOKEN_LIMITED),
        (["rr:rl-pc", "b:b-pc"], "vk-search/openai", Decision.REQUEST_LIMITED),
        (["rr:rl-customer", "b:b-pc"], "acme", Decision.REQUEST_LIMITED),
        (["b:b-pc", "b:b-key", "b:b-team", "b:b-customer"], "vk-search/openai", Decision.BUDGET_EXCEEDED),
        (["b:b-key", "b:b-team", "b:b-customer"], "vk-search", Decision.BUDGET_EXCEEDED),
        (["b:b-team", "b:b-customer"], "search", Decision.BUDGET_EXCEEDED),
        (["b:b-customer"], "acme", Decision.BUDGET_EXCEEDED),
    ],
)
async def test_the_first_failing_limit_decides(full: list[str], denier: str, decision: Decision) -> None:
    enforcer = await _enforcer_with(full_hierarchy(), full)
    admission = await enforcer.admit(full_hierarchy(), f.facts(key=VK))
    assert not admission.allowed and admission.reservation is None
    assert (admission.denial.scope.id, admission.denial.decision) == (denier, decision)
    assert enforcer.reservations_in_flight == 0


async def test_token_side_is_checked_when_the_request_side_has_expired() -> None:
    snap = f.snapshot(providers=[f.provider("openai", rate_limit=f.rate_limit(
        requests=10, request_window="1m", tokens=1000, token_window="1h"))])
    clock = Clock()
    enforcer = Enforcer(MemoryCounterStore(), clock)
    first = await enforcer.admit(snap, f.facts(tokens=900))
    await enforcer.settle(first.reservation, 1000, 0)
    clock.now += 2 * 60_000  # the request window is over, the token window is not
    admission = await enforcer.admit(snap, f.facts(tokens=1))
    assert admission.denial.decision is Decision.TOKEN_LIMITED


async def test_request_side_is_checked_when_the_token_side_has_expired() -> None:
    snap = f.snapshot(providers=[f.provider("openai", rate_limit=f.rate_limit(
        requests=2, request_window="1h", tokens=1000, token_window="1m"))])
    clock = Clock()
    enforcer = Enforcer(MemoryCounterStore(), clock)
    for _ in range(2):
        assert (await enforcer.admit(snap, f.facts(tokens=10))).allowed
    clock.now += 2 * 60_000
    assert (await enforcer.admit(snap, f.facts(tokens=10))).denial.decision is Decision.REQUEST_LIMITED


async def test_model_on_provider_config_is_checked_before_the_model_only_config() -> None:
    snap = f.snapshot(model_configs=[
        f.model_config("gpt-4o-mini", rate_limit=f.rate_limit(requests=1)),
        f.model_config("gpt-4o-mini", "openai", rate_limit=f.rate_limit(requests=1)),
    ])
    enforcer = Enforcer(MemoryCounterStore(), Clock())
    await enforcer.admit(snap, f.facts())
    denial = (await enforcer.admit(snap, f.facts())).denial
    assert denial.scope.id == "openai/gpt-4o-mini"
    # On another provider only the model-only config applies; it is full too.
    assert (await enforcer.admit(snap, f.facts("local"))).denial.scope.id == "gpt-4o-mini"


async def test_team_and_customer_budgets_are_shared_by_their_keys() -> None:
    a, b, c = f.key_value("a"), f.key_value("b"), f.key_value("c")
    snap = f.snapshot(
        keys={a: f.virtual_key("a", team_id="search"), b: f.virtual_key("b", team_id="search"),
              c: f.virtual_key("c", customer_id="acme")},
        teams=[f.team("search", customer_id="acme", budget=f.budget("1.00"))],
        customers=[f.customer("acme", budget=f.budget("1.50"))],
    )
    enforcer = Enforcer(MemoryCounterStore(), Clock())
    spent = await enforcer.admit(snap, f.facts(key=a, cost_nano=f.nano("0.10")))
    await enforcer.settle(spent.reservation, 10, f.nano("1.00"))
    assert (await enforcer.admit(snap, f.facts(key=b, cost_nano=1))).denial.scope.id == "search"
    direct = await enforcer.admit(snap, f.facts(key=c, cost_nano=f.nano("0.40")))
    assert direct.allowed
    assert (await enforcer.admit(snap, f.facts(key=c, cost_nano=f.nano("0.20")))).denial.scope.id == "acme"


# --- verdicts, headers, bodies -----------------------------------------------------------

def _check(kind: Kind, limit: int, duration: str = "1m", level: Level = Level.VIRTUAL_KEY,
           name: str = "search service", alignment: Alignment | None = None) -> LimitCheck:
    return LimitCheck(Scope(level, "id-" + name, name), kind, f"{kind.value}:{name}", limit,
                      parse_duration(duration), alignment)


def test_a_request_denial_says_when_to_retry() -> None:
    check = _check(Kind.REQUESTS, 60)
    denial = decide(Plan((check,), (1,)), AcquireResult(0, (CounterReading(55, 5, NOW - 48_000),)), NOW)
    assert denial.message == ("Virtual key 'search service' allows 60 requests per 1m; 55 are spent and 5 reserved "
                              "by requests in flight; try again in 12 s")
    assert (denial.used, denial.reserved) == (60, 5)
    assert (denial.limit, denial.used, denial.reset_at_ms, denial.retry_after_s) == (60, 60, NOW + 12_000, 12)
    assert denial_headers(denial) == [(b"retry-after", b"12")]
    body = orjson.loads(error_body(denial))["error"]
    assert body == {
        "type": "request_limited", "code": "request_limited", "message": denial.message,
        "scope": {"level": "virtual_key", "id": "id-search service", "name": "search service"},
        "limit": 60, "used": 60, "spent": 55, "reserved": 5, "requested": 1, "reset_at": "2026-11-15T12:00:12Z",
    }


def test_retry_after_rounds_up_and_is_at_least_one_second() -> None:
    check = _check(Kind.TOKENS, 100)
    late = decide(Plan((check,), (5,)), AcquireResult(0, (CounterReading(99, 0, NOW - 59_999),)), NOW)
    assert late.retry_after_s == 1 and denial_headers(late) == [(b"retry-after", b"1")]
    odd = decide(Plan((check,), (5,)), AcquireResult(0, (CounterReading(99, 0, NOW - 30_500),)), NOW)
    assert odd.retry_after_s == 30
    assert odd.decision.status == 429 and "99 are used or reserved" in odd.message


def test_a_budget_denial_names_the_team_in_dollars() -> None:
    check = _check(Kind.BUDGET, f.nano(100), "1M", Level.TEAM, "Search", Alignment())
    reading = CounterReading(f.nano("100.02"), 0, f.at(2026, 11, 1))
    denial = decide(Plan((check,), (f.nano("0.01"),)), AcquireResult(0, (reading,)), NOW)
    assert denial.message == (
        "Team 'Search' has used $100.02 of its $100.00 budget for 1M; it resets at 2026-12-01T00:00:00Z"
    )
    assert denial.decision.status == 402
    body = orjson.loads(error_body(denial))["error"]
    assert (body["limit"], body["used"], body["reset_at"]) == (100.0, 100.02, "2026-12-01T00:00:00Z")
    assert denial_headers(denial) == [(b"retry-after", str(16 * 86_400 - 12 * 3600).encode())]


def test_a_budget_that_an_estimate_would_overrun_says_so() -> None:
    check = _check(Kind.BUDGET, f.nano(10), "1d", Level.CUSTOMER, "Acme")
    reading = CounterReading(f.nano("9.95"), 0, NOW - 1000)
    denial = decide(Plan((check,), (f.nano("0.10"),)), AcquireResult(0, (reading,)), NOW)
    assert "has used $9.95 of its $10.00 budget for 1d and this request's estimated $0.10 does not fit" in denial.message


def test_allowed_carries_the_tightest_request_and_token_headers() -> None:
    checks = (_check(Kind.REQUESTS, 100, "1m", name="a"), _check(Kind.REQUESTS, 10, "1h", name="b"),
              _check(Kind.TOKENS, 5000, "1m", name="c"), _check(Kind.BUDGET, 1, "1d", name="d"))
    readings = (CounterReading(50, 1, NOW - 30_000), CounterReading(2, 1, NOW - 360_000),
                CounterReading(0, 100, NOW), CounterReading(0, 1, NOW))
    verdict = decide(Plan(checks, (1, 1, 100, 1)), AcquireResult(-1, readings), NOW)
    assert isinstance(verdict, Allowed)
    assert dict(verdict.headers) == {
        b"x-ratelimit-limit-requests": b"10", b"x-ratelimit-remaining-requests": b"7",
        b"x-ratelimit-reset-requests": b"54m0s",
        b"x-ratelimit-limit-tokens": b"5000", b"x-ratelimit-remaining-tokens": b"4900",
        b"x-ratelimit-reset-tokens": b"1m0s",
        b"x-tollway-budget-remaining": b"0", b"x-tollway-budget-reset": iso_utc(NOW + 86_400_000).encode(),
    }


def test_allowed_without_rate_limits_carries_only_the_budget_headers() -> None:
    verdict = decide(Plan((_check(Kind.BUDGET, 5),), (1,)), AcquireResult(-1, (CounterReading(0, 1, NOW),)), NOW)
    assert [name for name, _ in verdict.headers] == [b"x-tollway-budget-remaining", b"x-tollway-budget-reset"]


def test_allowed_without_any_limit_but_in_flight_carries_no_headers() -> None:
    check = LimitCheck(f.governed(Level.VIRTUAL_KEY, "vk").scope, Kind.IN_FLIGHT, "cf:x", 3, IN_FLIGHT_RETRY)
    verdict = decide(Plan((check,), (1,)), AcquireResult(-1, (CounterReading(0, 1, 0),)), NOW)
    assert verdict == Allowed([])


@pytest.mark.parametrize(("ms", "text"), [(0, "0ms"), (120, "120ms"), (1000, "1s"), (1001, "2s"),
                                           (360_000, "6m0s"), (3_723_000, "1h2m3s"), (86_400_000, "24h0m0s")])
def test_reset_header_format(ms: int, text: str) -> None:
    assert reset_text(ms) == text


def test_settle_and_release_ops_replace_each_reservation() -> None:
    checks = (_check(Kind.REQUESTS, 10), _check(Kind.TOKENS, 1000), _check(Kind.BUDGET, 10**9, "1M", alignment=Alignment()))
    planned = Plan(checks, (1, 300, 5000))
    settled = settle_ops(planned, NOW, tokens=250, cost_nano=7000)
    assert [(op.reserved, op.actual) for op in settled] == [(1, 1), (300, 250), (5000, 7000)]
    assert settled[2].floor_ms == settled[2].reset_to_ms == f.at(2026, 11, 1)
    assert settled[0].floor_ms == NOW - 60_000 + 1 and settled[0].reset_to_ms == NOW
    assert [(op.reserved, op.actual) for op in release_ops(planned, NOW)] == [(1, 0), (300, 0), (5000, 0)]
    assert [(op.limit, op.amount) for op in acquire_ops(planned, NOW)] == [(10, 1), (1000, 300), (10**9, 5000)]
