"""End users through the management API, on SQLite and PostgreSQL: templates
(``end_user_limits``) on keys, teams and customers, a key's ``end_user`` settings,
validation that names the field and writes nothing, per-user overrides that take effect at
once, and end users listed, searched and ranked by spend (with the request log and the
spend report by end user)."""

from __future__ import annotations

import httpx2
import openai
import pytest

from tests.api.support import error, unique
from tests.support.gateway import RunningGateway

KEYS = "/api/governance/virtual-keys"
TEAMS = "/api/governance/teams"
END_USERS = "/api/governance/end-users"
ONE_A_MINUTE = {"rate_limit": {"request_max_limit": 1, "request_reset_duration": "1m"}}
HELLO = [{"role": "user", "content": "hi"}]


def team_with_key(api: httpx2.Client, template: dict | None = ONE_A_MINUTE) -> tuple[str, str, str]:
    """(team id, key id, key value) of a new team with ``template`` and a key of it."""
    team = api.post(TEAMS, json={"id": unique("team"), "name": "t", "end_user_limits": template}).json()["team"]
    key = api.post(KEYS, json={"id": unique("vk"), "name": "k", "team_id": team["id"]}).json()["virtual_key"]
    return team["id"], key["id"], key["value"]


def chat(gateway: RunningGateway, value: str, user: str) -> int:
    client = openai.OpenAI(base_url=gateway.v1, api_key=value, max_retries=0)
    try:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO, user=user)
        return 200
    except openai.APIStatusError as exc:
        return exc.status_code


@pytest.mark.parametrize(("path", "kind"), [(KEYS, "virtual_key"), (TEAMS, "team"),
                                            ("/api/governance/customers", "customer")])
def test_keys_teams_and_customers_take_an_end_user_template(api: httpx2.Client, path: str, kind: str) -> None:
    template = {"budget": {"max_limit": "5", "reset_duration": "1d"}, "concurrency": {"max_in_flight": 2}}
    created = api.post(path, json={"id": unique(kind), "name": "x", "end_user_limits": template}).json()[kind]
    shown = created["end_user_limits"]
    assert shown["budget"]["max_limit"] == "5" and shown["concurrency"]["max_in_flight"] == 2
    assert "id" not in shown  # the counters' id is the gateway's own
    changed = api.patch(f"{path}/{created['id']}", json={"end_user_limits": ONE_A_MINUTE}).json()[kind]
    assert set(changed["end_user_limits"]) == {"rate_limit"}
    untouched = api.patch(f"{path}/{created['id']}", json={"name": "renamed"}).json()[kind]
    assert untouched["end_user_limits"] == changed["end_user_limits"]  # a patch that leaves it out keeps it
    assert api.patch(f"{path}/{created['id']}", json={"end_user_limits": None}).json()[kind]["end_user_limits"] is None


def test_a_key_says_where_its_end_user_comes_from(api: httpx2.Client) -> None:
    key = api.post(KEYS, json={"id": unique("vk"), "name": "k",
                               "end_user": {"source": ["header"], "required": True}}).json()["virtual_key"]
    assert key["end_user"] == {"source": ["header"], "required": True}
    assert api.patch(f"{KEYS}/{key['id']}", json={"end_user": None}).json()["virtual_key"]["end_user"] is None


@pytest.mark.parametrize(("body", "field"), [
    ({"end_user_limits": {}}, "end_user_limits"),
    ({"end_user_limits": {"budget": {"max_limit": -1, "reset_duration": "1d"}}}, "end_user_limits.budget.max_limit"),
    ({"end_user_limits": {"budget": {"max_limit": 1, "reset_duration": "soon"}}},
     "end_user_limits.budget.reset_duration"),
    ({"end_user_limits": {"rate_limit": {"request_max_limit": 5}}}, "end_user_limits.rate_limit"),
    ({"end_user_limits": {"concurrency": {"max_in_flight": 0}}}, "end_user_limits.concurrency.max_in_flight"),
    ({"end_user_limits": {"budgets": {}}}, "end_user_limits.budgets"),
    ({"end_user": {"source": ["cookie"]}}, "end_user.source[0]"),
    ({"end_user": {"source": []}}, "end_user.source"),
    ({"end_user": {"source": ["body", "body"]}}, "end_user.source"),
], ids=["empty", "negative-budget", "bad-duration", "half-a-side", "no-slots", "unknown-part", "unknown-source",
        "no-source", "source-twice"])
def test_bad_end_user_settings_are_refused_naming_the_field_and_write_nothing(api: httpx2.Client, body: dict,
                                                                              field: str) -> None:
    ident = unique("vk")
    problem = error(api.post(KEYS, json={"id": ident, "name": "k", **body}), 422)
    assert field in {detail["field"] for detail in problem["details"]}, problem
    assert api.get(f"{KEYS}/{ident}").status_code == 404
    key = api.post(KEYS, json={"id": ident, "name": "k"}).json()["virtual_key"]
    problem = error(api.patch(f"{KEYS}/{ident}", json={"name": "changed", **body}), 422)
    assert field in {detail["field"] for detail in problem["details"]}, problem
    assert api.get(f"{KEYS}/{ident}").json()["virtual_key"] == key | {"value": None}


def test_an_override_gives_one_end_user_other_limits_at_once(gateway: RunningGateway, api: httpx2.Client) -> None:
    team_id, _, value = team_with_key(api)
    assert [chat(gateway, value, "vip") for _ in range(2)] == [200, 429]
    path = f"{TEAMS}/{team_id}/end-users/vip"
    answer = api.put(path, json={"rate_limit": {"request_max_limit": 3, "request_reset_duration": "1m"}})
    assert answer.status_code == 200, answer.text
    limits = answer.json()["limits"]
    # The same counter: the one request already made counts against the new limit.
    assert [(lim["kind"], lim["limit"], lim["used"], lim["remaining"]) for lim in limits] == [("requests", 3, 1, 2)]
    # The one readout every limit has (`limit_view`): its window's next reset and the end user as its scope.
    assert (limits[0]["level"], limits[0]["id"], limits[0]["unit"]) == ("end_user", "vip", "requests")
    assert limits[0]["reset_at"] and 0 < limits[0]["reset_in_s"] <= 60
    assert [chat(gateway, value, "vip") for _ in range(3)] == [200, 200, 429]
    assert [chat(gateway, value, "pleb") for _ in range(2)] == [200, 429]  # everyone else: the template's
    assert api.get(path).json()["override"]["rate_limit"]["request_max_limit"] == 3
    assert api.delete(path).status_code == 200
    assert api.get(path).json()["override"] is None
    assert api.get(path).json()["limits"][0]["limit"] == 1


def test_overrides_are_refused_where_there_is_no_template(api: httpx2.Client) -> None:
    team_id, key_id, _ = team_with_key(api, template=None)
    assert error(api.put(f"{TEAMS}/{team_id}/end-users/u", json=ONE_A_MINUTE), 409)
    assert error(api.put(f"{TEAMS}/no-such-team/end-users/u", json=ONE_A_MINUTE), 404)
    assert error(api.put(f"{KEYS}/{key_id}/end-users/u", json=ONE_A_MINUTE), 409)
    templated, _, _ = team_with_key(api)
    problem = error(api.put(f"{TEAMS}/{templated}/end-users/u", json={"rate_limit": {"request_max_limit": 0}}), 422)
    assert problem["details"][0]["field"].startswith("rate_limit")
    assert error(api.put(f"{TEAMS}/{templated}/end-users/u", json=[1]), 422)
    assert error(api.delete(f"{TEAMS}/{templated}/end-users/u"), 404)
    assert api.get(f"{TEAMS}/{templated}/end-users/u").json()["override"] is None  # nothing written


def test_end_users_are_listed_searched_and_ranked_by_spend(gateway: RunningGateway, api: httpx2.Client) -> None:
    team_id, key_id, value = team_with_key(api, template={"rate_limit": {"request_max_limit": 100,
                                                                         "request_reset_duration": "1m"}})
    for user, count in (("alice", 3), ("albert", 1), ("bob", 2)):
        for _ in range(count):
            assert chat(gateway, value, user) == 200
    listed = api.get(END_USERS, params={"team_id": team_id, "sort": "requests"}).json()
    assert [(row["end_user"], row["requests"]) for row in listed["end_users"]] == [
        ("alice", 3), ("bob", 2), ("albert", 1)]
    assert listed["count"] == 3
    by_spend = api.get(END_USERS, params={"virtual_key_id": key_id}).json()["end_users"]
    assert [row["spend"] for row in by_spend] == sorted((row["spend"] for row in by_spend), reverse=True)
    searched = api.get(END_USERS, params={"team_id": team_id, "search": "al", "sort": "end_user"}).json()
    assert [row["end_user"] for row in searched["end_users"]] == ["albert", "alice"]
    assert api.get(END_USERS, params={"team_id": team_id, "search": "%"}).json()["end_users"] == []  # no wildcards
    logs = api.get("/api/logs", params={"end_user": "bob", "team_id": team_id}).json()["logs"]
    assert [entry["end_user"] for entry in logs] == ["bob", "bob"]
    report = api.get("/api/usage/spend", params={"team_id": team_id, "group_by": "end_user"}).json()
    assert {row["group"]: row["requests"] for row in report["series"]} == {"alice": 3, "albert": 1, "bob": 2}


def test_explain_names_the_end_user_limit_that_would_deny(gateway: RunningGateway, api: httpx2.Client) -> None:
    _, key_id, value = team_with_key(api)
    assert chat(gateway, value, "frank") == 200
    ask = {"virtual_key_id": key_id, "model": "openai/gpt-4o-mini", "end_user": "frank"}
    explained = api.post("/api/governance/explain", json=ask).json()
    assert explained["decision"] == "request_limited"
    assert explained["scope"] == {"level": "end_user", "id": "frank", "name": "frank"}
    assert api.post("/api/governance/explain", json={**ask, "end_user": "gina"}).json()["allowed"] is True
