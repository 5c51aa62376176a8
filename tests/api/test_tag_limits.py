"""`/api/governance/tags` and a key's ``allowed_tags`` / ``forced_tags`` through HTTP, on
SQLite and PostgreSQL: names normalised as requests' tags are, every bad entry a 422
naming its field with nothing written, and changes live on the gateway at once."""

from __future__ import annotations

import httpx2
import pytest

from tests.api.support import audit_of, error, unique
from tests.support.gateway import RunningGateway

TAGS = "/api/governance/tags"
KEYS = "/api/governance/virtual-keys"
BUDGET = {"max_limit": 5, "reset_duration": "1d"}


def test_tag_crud_normalises_the_name_and_goes_live(gateway: RunningGateway, api: httpx2.Client) -> None:
    name = unique("support")
    created = api.post(TAGS, json={"name": f"  {name.upper()} ", "budget": BUDGET,
                                   "concurrency": {"max_in_flight": 4}})
    assert created.status_code == 201, created.text
    tag = created.json()["tag"]
    assert (tag["name"], tag["budget"]["max_limit"], tag["concurrency"]["max_in_flight"]) == (name, 5, 4)
    assert gateway.runtime.snapshot.tags[name].budget is not None  # the gateway enforces it already

    changed = api.put(f"{TAGS}/{name}", json={"rate_limit": {"request_max_limit": 9, "request_reset_duration": "1m"},
                                              "concurrency": None}).json()["tag"]
    assert changed["rate_limit"]["request_max_limit"] == 9 and changed["concurrency"] is None
    assert changed["budget"]["id"] == tag["budget"]["id"]  # untouched: same counter, same usage
    listed = api.get(TAGS, params={"search": name}).json()
    assert listed["count"] == 1 and listed["tags"][0]["name"] == name
    assert api.get(f"{TAGS}/{name}").json()["tag"] == changed
    assert api.post(f"{TAGS}/{name}/budget/reset").status_code == 200
    assert error(api.post(TAGS, json={"name": name.upper()}), 409)["message"] == f"tag {name!r} already exists"

    assert api.delete(f"{TAGS}/{name}").status_code == 200
    assert name not in gateway.runtime.snapshot.tags
    assert error(api.get(f"{TAGS}/{name}"), 404)
    assert [e["action"] for e in audit_of(api, name)] == ["delete", "reset", "update", "create"]


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "two words", "budget": BUDGET}, "name"),
    ({"name": "fіnance", "budget": BUDGET}, "name"),  # Cyrillic і
    ({"name": "x" * 65}, "name"),
    ({"name": "ok-tag", "budget": {"max_limit": 0, "reset_duration": "1d"}}, "budget.max_limit"),
    ({"name": "ok-tag", "rate_limit": {"request_max_limit": 5}}, "rate_limit"),
    ({"name": "ok-tag", "colour": "red"}, "colour"),
], ids=["space", "look-alike", "too-long", "zero-budget", "half-rate-limit", "unknown-field"])
def test_a_bad_tag_entry_is_a_422_naming_the_field_and_writes_nothing(api: httpx2.Client, body: dict,
                                                                      field: str) -> None:
    before = api.get(TAGS).json()["count"]
    problem = error(api.post(TAGS, json=body), 422)
    assert field in {detail["field"] for detail in problem["details"]} | {problem.get("field")}
    assert api.get(TAGS).json()["count"] == before
    assert audit_of(api, "ok-tag") == []


def test_a_key_takes_allowed_and_forced_tags_normalised(gateway: RunningGateway, api: httpx2.Client) -> None:
    key = api.post(KEYS, json={"id": unique("vk"), "name": "tagged", "allowed_tags": ["Support", " search", "SUPPORT"],
                               "forced_tags": ["CC:42"]}).json()["virtual_key"]
    assert (key["allowed_tags"], key["forced_tags"]) == (["support", "search"], ["cc:42"])
    policy = next(p for p in gateway.runtime.snapshot.keys_by_hash.values() if p.id == key["id"])
    assert (policy.allowed_tags, policy.forced_tags) == (frozenset({"support", "search"}), ("cc:42",))

    changed = api.patch(f"{KEYS}/{key['id']}", json={"allowed_tags": []}).json()["virtual_key"]
    assert (changed["allowed_tags"], changed["forced_tags"]) == ([], ["cc:42"])  # forced_tags not stated: kept


@pytest.mark.parametrize(("body", "field"), [
    ({"allowed_tags": ["ok", "not ok"]}, "allowed_tags"),
    ({"forced_tags": [f"t{i}" for i in range(17)]}, "forced_tags"),
    ({"forced_tags": None}, "forced_tags"),
    ({"allowed_tags": "support"}, "allowed_tags"),
], ids=["bad-allowed", "too-many-forced", "null-forced", "not-a-list"])
def test_bad_key_tags_are_a_422_and_change_nothing(api: httpx2.Client, body: dict, field: str) -> None:
    key = api.post(KEYS, json={"id": unique("vk"), "name": "k", "forced_tags": ["keep"]}).json()["virtual_key"]
    problem = error(api.put(f"{KEYS}/{key['id']}", json={"name": "renamed", **body}), 422)
    assert problem["field"].split(".")[0].split("[")[0] == field
    assert api.get(f"{KEYS}/{key['id']}").json()["virtual_key"] == key | {"value": None}
    assert [e["action"] for e in audit_of(api, key["id"])] == ["create"]
    assert error(api.post(KEYS, json={"name": "new", **body}), 422)["field"].split(".")[0].split("[")[0] == field
