"""`/api/governance/limits` through HTTP, on SQLite and PostgreSQL: a rule's life (create,
list, get, partial update, reset, delete) live on the gateway at once; every bad field a
422 naming it with nothing written; ids a selector names must exist."""

from __future__ import annotations

import httpx2
import pytest

from tests.api.support import audit_of, error, unique
from tests.support.gateway import RunningGateway

LIMITS = "/api/governance/limits"
TEAMS = "/api/governance/teams"
BUDGET = {"max_limit": 5, "reset_duration": "1d"}


def a_team(api: httpx2.Client) -> str:
    team = unique("team")
    assert api.post(TEAMS, json={"id": team, "name": team}).status_code == 201
    return team


def test_rule_crud_goes_live_normalised(gateway: RunningGateway, api: httpx2.Client) -> None:
    team, name = a_team(api), unique("rule")
    created = api.post(LIMITS, json={"name": name, "match": {"team": team, "model": ["GPT-4o", "gpt-4o-mini"]},
                                     "per": "end_user", "budget": BUDGET, "description": "every user of the team"})
    assert created.status_code == 201, created.text
    rule = created.json()["limit_rule"]
    assert (rule["match"], rule["per"], rule["when_missing"]) == (
        {"team": [team], "model": ["GPT-4o", "gpt-4o-mini"]}, ["end_user"], "skip")
    live = gateway.runtime.snapshot.limit_rules[name]
    assert live.match["model"] == frozenset({"gpt-4o", "gpt-4o-mini"}) and live.per == ("end_user",)

    changed = api.patch(f"{LIMITS}/{name}", json={"when_missing": "deny",
                                                  "rate_limit": {"request_max_limit": 3, "request_reset_duration": "1m"}})
    assert changed.status_code == 200, changed.text
    view = changed.json()["limit_rule"]
    assert view["when_missing"] == "deny" and view["budget"]["id"] == rule["budget"]["id"]  # same counter
    assert gateway.runtime.snapshot.limit_rules[name].when_missing == "deny"
    listed = api.get(LIMITS, params={"search": name}).json()
    assert listed["count"] == 1 and listed["limit_rules"][0] == view
    assert api.get(f"{LIMITS}/{name}").json()["limit_rule"] == view
    assert api.post(f"{LIMITS}/{name}/budget/reset").status_code == 200
    assert error(api.post(LIMITS, json={"name": name, "match": {"team": team}, "budget": BUDGET}), 409)

    assert api.delete(f"{LIMITS}/{name}").status_code == 200
    assert name not in gateway.runtime.snapshot.limit_rules
    assert error(api.get(f"{LIMITS}/{name}"), 404)
    assert [e["action"] for e in audit_of(api, name)] == ["delete", "reset", "update", "create"]


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "Bad Name", "match": {"provider": "openai"}, "budget": BUDGET}, "name"),
    ({"name": "r", "match": {}, "budget": BUDGET}, "match"),
    ({"name": "r", "match": {"region": "eu"}, "budget": BUDGET}, "match.region"),
    ({"name": "r", "match": {"model": "gpt\u200b4o"}, "budget": BUDGET}, "match.model"),
    ({"name": "r", "match": {"tag": "two words"}, "budget": BUDGET}, "match.tag"),
    ({"name": "r", "match": {"provider": []}, "budget": BUDGET}, "match.provider"),
    ({"name": "r", "match": {"provider": "openai"}, "per": "region", "budget": BUDGET}, "per[0]"),
    ({"name": "r", "match": {"provider": "openai"}, "per": "model", "when_missing": "deny", "budget": BUDGET},
     "when_missing"),
    ({"name": "r", "match": {"team": "no-such-team"}, "budget": BUDGET}, "match.team"),
    ({"name": "r", "match": {"virtual_key": ["no-such-key"]}, "budget": BUDGET}, "match.virtual_key"),
    ({"name": "r", "match": {"provider": "openai"}, "budget": {"max_limit": 0, "reset_duration": "1d"}},
     "budget.max_limit"),
], ids=["name", "empty-match", "unknown-dimension", "hidden-model-char", "bad-tag", "no-values", "unknown-per",
        "deny-without-optional-per", "unknown-team", "unknown-key", "zero-budget"])
def test_a_bad_rule_is_a_422_naming_the_field_and_writes_nothing(api: httpx2.Client, body: dict, field: str) -> None:
    before = api.get(LIMITS).json()["count"]
    problem = error(api.post(LIMITS, json=body), 422)
    assert field in {detail["field"] for detail in problem.get("details", ())} | {problem.get("field")}, problem
    assert api.get(LIMITS).json()["count"] == before
    assert audit_of(api, "r") == []


def test_a_bad_update_changes_nothing(gateway: RunningGateway, api: httpx2.Client) -> None:
    team, name = a_team(api), unique("rule")
    assert api.post(LIMITS, json={"name": name, "match": {"team": team}, "budget": BUDGET}).status_code == 201
    before = api.get(f"{LIMITS}/{name}").json()["limit_rule"]
    for body, field in (({"match": {"team": "no-such-team"}, "budget": {"max_limit": 9}}, "match.team"),
                        ({"when_missing": "deny"}, "when_missing"),  # per is empty: nothing a request may lack
                        ({"match": None}, "match")):
        problem = error(api.patch(f"{LIMITS}/{name}", json=body), 422)
        assert field in {d["field"] for d in problem.get("details", ())} | {problem.get("field")}, problem
    assert error(api.patch(f"{LIMITS}/{name}", json={"budget": None}), 422)["message"].startswith("a limit rule needs")
    assert api.get(f"{LIMITS}/{name}").json()["limit_rule"] == before
    assert gateway.runtime.snapshot.limit_rules[name].limits.budget.max_limit_nano == 5 * 10**9
