"""A request a shadow limit would have denied: its request log row and its metric."""

from __future__ import annotations

from tollway.governance.decisions import Decision, Denial
from tollway.governance.model import Level, Scope
from tollway.proxy.outcome import Outcome
from tollway.server.recorder import to_log_record
from tollway.telemetry import Metrics

WOULD = Denial(Decision.TOKEN_LIMITED, "Team 'Search' token limit …", Scope(Level.TEAM, "search", "Search"))


def test_the_log_row_of_an_admitted_request_names_the_shadow_limit_that_would_have_denied_it() -> None:
    row = to_log_record(Outcome("r1", "chat", 1_700_000_000_000, status=200, would_deny=WOULD))
    assert (row.decision, row.denied_level, row.denied_id) == ("allow", None, None)
    assert (row.would_deny, row.would_deny_level, row.would_deny_id) == ("token_limited", "team", "search")
    plain = to_log_record(Outcome("r2", "chat", 1_700_000_000_000))
    assert (plain.would_deny, plain.would_deny_level, plain.would_deny_id) == (None, None, None)


def test_would_be_denials_are_counted_by_level_and_reason_only() -> None:
    metrics = Metrics()
    for request_id in ("a", "b"):
        metrics.observe(Outcome(request_id, "chat", 0, provider="openai", model="gpt", would_deny=WOULD))
    metrics.observe(Outcome("c", "chat", 0, provider="openai", model="gpt"))
    text = metrics.render().decode()
    assert 'tollway_would_deny_total{level="team",reason="token_limited"} 2.0' in text
    # Bounded labels: no entity id, key or model in the series (ids are in the request log).
    series = next(line for line in text.splitlines() if line.startswith("tollway_would_deny_total"))
    assert "search" not in series
