"""CRUD of every governance entity through HTTP, with Bifrost's envelopes and every
error path, on SQLite and on PostgreSQL (one gateway per database for the module)."""

from __future__ import annotations

import httpx2
import pytest

from tests.api.support import audit_of, error, unique
from tests.support.gateway import RunningGateway

KEYS = "/api/governance/virtual-keys"
TEAMS = "/api/governance/teams"
CUSTOMERS = "/api/governance/customers"
MODELS = "/api/governance/model-configs"
BUDGET = {"max_limit": 10, "reset_duration": "1d"}
RATE = {"request_max_limit": 60, "request_reset_duration": "1m", "token_max_limit": 1000, "token_reset_duration": "1h"}


# -- virtual keys -------------------------------------------------------------------------------


def test_key_lifecycle_shows_the_value_once_and_keeps_budget_usage_fields(api: httpx2.Client) -> None:
    team = api.post(TEAMS, json={"id": unique("team"), "name": "Search"}).json()["team"]
    body = {"id": unique("vk"), "name": "search", "team_id": team["id"], "allowed_models": ["gpt-4o-mini"],
            "budget": BUDGET, "rate_limit": RATE,
            "provider_configs": [{"provider": "openai", "rate_limit": {"request_max_limit": 5,
                                                                       "request_reset_duration": "1m"}}]}

    created = api.post(KEYS, json=body)

    assert created.status_code == 201, created.text
    envelope = created.json()
    assert envelope["message"].startswith("virtual key created")
    key = envelope["virtual_key"]
    assert key["value"].startswith("tw-") and len(key["value"]) >= 3 + 32
    assert key["value_prefix"] == key["value"][:8]
    assert (key["team_id"], key["customer_id"], key["is_active"]) == (team["id"], None, True)
    assert key["budget"]["max_limit"] == 10 and key["budget"]["current_usage"] == 0
    assert key["budget"]["reset_at"] > key["budget"]["last_reset"]
    assert key["rate_limit"]["request_max_limit"] == 60 and key["rate_limit"]["token_current_usage"] == 0
    [config] = key["provider_configs"]
    assert (config["provider"], config["weight"], config["rate_limit"]["request_max_limit"]) == ("openai", 1.0, 5)

    fetched = api.get(f"{KEYS}/{key['id']}").json()
    assert fetched["message"] and fetched["virtual_key"]["value"] is None
    assert key["value"] not in api.get(KEYS).text
    assert fetched["virtual_key"]["budget"] == key["budget"]
    assert [e["action"] for e in audit_of(api, key["id"])] == ["create"]
    assert key["value"] not in str(audit_of(api, key["id"]))

    deleted = api.delete(f"{KEYS}/{key['id']}")
    assert deleted.status_code == 200 and key["id"] in deleted.json()["message"]
    assert error(api.get(f"{KEYS}/{key['id']}"), 404)["message"] == f"virtual key {key['id']!r} not found"
    assert [e["action"] for e in audit_of(api, key["id"])] == ["delete", "create"]
    assert api.get("/api/governance/usage", params={"id": key["id"]}).json()["count"] == 0


def test_a_caller_supplied_value_is_validated_and_must_be_unique(api: httpx2.Client) -> None:
    value = "tw-" + unique("supplied") + "-0123456789abcdef"
    assert api.post(KEYS, json={"name": "a", "value": value}).status_code == 201

    duplicate = error(api.post(KEYS, json={"name": "b", "value": value}), 409)
    assert "already used by virtual key" in duplicate["message"]
    bad = error(api.post(KEYS, json={"name": "c", "value": "sk-not-a-virtual-key-value"}), 422)
    assert bad["field"] == "value" and "must start with 'tw-'" in bad["message"]


def test_partial_update_keeps_what_it_does_not_state(api: httpx2.Client) -> None:
    key = api.post(KEYS, json={"id": unique("vk"), "name": "k", "budget": BUDGET, "rate_limit": RATE}).json()["virtual_key"]
    path = f"{KEYS}/{key['id']}"

    updated = api.put(path, json={"description": "nightly jobs", "budget": {"max_limit": 2.5}}).json()["virtual_key"]

    assert (updated["name"], updated["description"]) == ("k", "nightly jobs")
    assert updated["budget"]["id"] == key["budget"]["id"]  # the same budget: usage is kept
    assert (updated["budget"]["max_limit"], updated["budget"]["reset_duration"]) == (2.5, "1d")
    assert updated["rate_limit"] == key["rate_limit"]
    patched = api.patch(path, json={"rate_limit": {"token_max_limit": None, "token_reset_duration": None},
                                    "budget": None, "is_active": False}).json()["virtual_key"]
    assert patched["budget"] is None and patched["is_active"] is False
    assert patched["rate_limit"]["token_max_limit"] is None and patched["rate_limit"]["request_max_limit"] == 60
    [update, *_] = audit_of(api, key["id"])
    assert update["action"] == "update" and update["before"]["is_active"] is True
    assert update["after"]["budget"] is None and update["before"]["budget"]["max_limit"] == "2.500000000"


def test_update_errors_write_nothing(api: httpx2.Client) -> None:
    key = api.post(KEYS, json={"id": unique("vk"), "name": "before", "budget": BUDGET}).json()["virtual_key"]
    path = f"{KEYS}/{key['id']}"

    unknown = error(api.put(path, json={"name": "after", "provider_configs": [{"provider": "nope"}]}), 422)
    rounds = error(api.put(path, json={"name": "after", "budget": {"max_limit": "0.0000000001"}}), 422)
    incomplete = error(api.put(path, json={"name": "after", "rate_limit": {"request_max_limit": 5}}), 422)
    null_name = error(api.put(path, json={"name": None}), 422)

    assert unknown["field"] == "provider_configs[0].provider" and "unknown provider 'nope'" in unknown["message"]
    assert rounds["field"] == "budget.max_limit" and "rounds to zero" in rounds["message"]
    assert "request_max_limit and request_reset_duration go together" in incomplete["message"]
    assert null_name["field"] == "name" and "may not be null" in null_name["message"]
    assert api.get(path).json()["virtual_key"] == key | {"value": None}
    assert [e["action"] for e in audit_of(api, key["id"])] == ["create"]


def test_key_owner_rules(api: httpx2.Client) -> None:
    team = api.post(TEAMS, json={"id": unique("team"), "name": "T"}).json()["team"]
    customer = api.post(CUSTOMERS, json={"id": unique("cust"), "name": "C"}).json()["customer"]

    both = error(api.post(KEYS, json={"name": "k", "team_id": team["id"], "customer_id": customer["id"]}), 422)
    unknown = error(api.post(KEYS, json={"name": "k", "team_id": "no-such-team"}), 422)
    key = api.post(KEYS, json={"name": "k", "team_id": team["id"]}).json()["virtual_key"]
    moved_wrongly = error(api.put(f"{KEYS}/{key['id']}", json={"customer_id": customer["id"]}), 422)
    moved = api.put(f"{KEYS}/{key['id']}", json={"customer_id": customer["id"], "team_id": None})

    assert "team or to a customer, not both" in both["message"]
    assert unknown == {"type": "invalid_field", "message": "team_id: unknown team 'no-such-team'", "field": "team_id",
                       "details": [{"field": "team_id", "message": "unknown team 'no-such-team'"}]}
    assert moved_wrongly["field"] == "customer_id"
    assert (moved.json()["virtual_key"]["team_id"], moved.json()["virtual_key"]["customer_id"]) == (None, customer["id"])


def test_validation_errors_name_every_field(api: httpx2.Client) -> None:
    body = {"name": " ", "budget": {"max_limit": -1, "reset_duration": "1x"}, "colour": "red",
            "rate_limit": {"request_max_limit": 0, "request_reset_duration": "1m"}}

    problem = error(api.post(KEYS, json=body), 422)

    fields = {detail["field"] for detail in problem["details"]}
    assert {"name", "budget.max_limit", "budget.reset_duration", "colour", "rate_limit.request_max_limit"} <= fields
    assert "invalid duration '1x'" in problem["message"]
    assert error(api.post(KEYS, content=b"{not json", headers={"content-type": "application/json"}), 400)[
        "message"] == "the request body is not valid JSON"
    assert error(api.get(KEYS, params={"limit": 0}), 400)["field"] == "limit"
    assert error(api.get(f"{KEYS}/no-such-key"), 404)["type"] == "not_found"
    assert error(api.put(f"{KEYS}/no-such-key", json={"name": "x"}), 404)
    assert error(api.delete(f"{KEYS}/no-such-key"), 404)
    assert error(api.get("/api/governance/nothing-here"), 404)


def test_list_is_paginated_and_filtered(api: httpx2.Client) -> None:
    team = api.post(TEAMS, json={"id": unique("team"), "name": "Paged"}).json()["team"]
    ids = sorted(api.post(KEYS, json={"id": unique("page"), "name": f"paged {i}", "team_id": team["id"],
                                      "is_active": i % 2 == 0}).json()["virtual_key"]["id"] for i in range(5))

    first = api.get(KEYS, params={"team_id": team["id"], "limit": 2}).json()
    rest = api.get(KEYS, params={"team_id": team["id"], "limit": 2, "offset": 2}).json()
    active = api.get(KEYS, params={"team_id": team["id"], "is_active": "true"}).json()
    searched = api.get(KEYS, params={"search": ids[3].upper()}).json()

    assert (first["count"], first["limit"], first["offset"]) == (5, 2, 0)
    assert [k["id"] for k in first["virtual_keys"] + rest["virtual_keys"]] == ids[:4]
    assert active["count"] == 3 and all(k["is_active"] for k in active["virtual_keys"])
    assert [k["id"] for k in searched["virtual_keys"]] == [ids[3]]


# -- teams and customers ------------------------------------------------------------------------


def test_team_and_customer_crud_with_envelopes(api: httpx2.Client) -> None:
    customer = api.post(CUSTOMERS, json={"id": unique("acme"), "name": "Acme", "budget": BUDGET})
    assert customer.status_code == 201 and customer.json()["message"] == "customer created"
    customer_id = customer.json()["customer"]["id"]
    team = api.post(TEAMS, json={"id": unique("team"), "name": "Search", "customer_id": customer_id,
                                 "rate_limit": RATE}).json()["team"]

    renamed = api.patch(f"{TEAMS}/{team['id']}", json={"name": "Search v2"}).json()
    teams = api.get(TEAMS, params={"customer_id": customer_id}).json()
    customers = api.get(CUSTOMERS, params={"search": customer_id}).json()

    assert renamed["team"]["name"] == "Search v2" and renamed["team"]["rate_limit"] == team["rate_limit"]
    assert (teams["count"], teams["teams"][0]["id"]) == (1, team["id"])
    assert customers["count"] == 1 and customers["customers"][0]["budget"]["max_limit"] == 10
    assert error(api.post(TEAMS, json={"id": team["id"], "name": "again"}), 409)["message"] == (
        f"team {team['id']!r} already exists")
    assert error(api.post(TEAMS, json={"name": "orphan", "customer_id": "nobody"}), 422)["field"] == "customer_id"
    assert error(api.post(CUSTOMERS, json={"id": "  ", "name": "blank"}), 422)["field"] == "id"


def test_deleting_a_team_with_keys_needs_cascade_and_touches_no_one_else(api: httpx2.Client) -> None:
    team = api.post(TEAMS, json={"id": unique("team"), "name": "T", "budget": BUDGET}).json()["team"]
    other = api.post(TEAMS, json={"id": unique("team"), "name": "Other", "budget": BUDGET}).json()["team"]
    key = api.post(KEYS, json={"name": "k", "team_id": team["id"], "budget": BUDGET}).json()["virtual_key"]
    bystander = api.post(KEYS, json={"name": "b", "team_id": other["id"], "budget": BUDGET}).json()["virtual_key"]

    refused = error(api.delete(f"{TEAMS}/{team['id']}"), 409)
    assert api.get(f"{KEYS}/{key['id']}").status_code == 200
    deleted = api.delete(f"{TEAMS}/{team['id']}", params={"cascade": "true"})

    assert "1 virtual key" in refused["message"] and "cascade=true" in refused["message"]
    assert deleted.status_code == 200 and key["id"] in deleted.json()["message"]
    assert api.get(f"{KEYS}/{key['id']}").status_code == 404
    assert api.get(f"{TEAMS}/{other['id']}").json()["team"]["budget"] == other["budget"]
    assert api.get(f"{KEYS}/{bystander['id']}").json()["virtual_key"]["budget"]["id"] == bystander["budget"]["id"]
    usage_ids = {entry["limit_id"] for entry in api.get("/api/governance/usage", params={"limit": 1000}).json()["usage"]}
    assert team["budget"]["id"] not in usage_ids and key["budget"]["id"] not in usage_ids
    assert other["budget"]["id"] in usage_ids


def test_deleting_a_customer_cascades_to_its_teams_and_keys(api: httpx2.Client) -> None:
    customer = api.post(CUSTOMERS, json={"id": unique("cust"), "name": "C"}).json()["customer"]
    team = api.post(TEAMS, json={"id": unique("team"), "name": "T", "customer_id": customer["id"]}).json()["team"]
    team_key = api.post(KEYS, json={"name": "k", "team_id": team["id"]}).json()["virtual_key"]
    own_key = api.post(KEYS, json={"name": "k", "customer_id": customer["id"]}).json()["virtual_key"]

    refused = error(api.delete(f"{CUSTOMERS}/{customer['id']}"), 409)
    assert api.delete(f"{CUSTOMERS}/{customer['id']}", params={"cascade": "true"}).status_code == 200

    assert "1 team and 2 virtual keys" in refused["message"]
    for path in (f"{CUSTOMERS}/{customer['id']}", f"{TEAMS}/{team['id']}", f"{KEYS}/{team_key['id']}",
                 f"{KEYS}/{own_key['id']}"):
        assert api.get(path).status_code == 404


# -- model configs and providers ----------------------------------------------------------------


def test_model_config_crud_and_uniqueness(api: httpx2.Client) -> None:
    model = unique("model")
    created = api.post(MODELS, json={"model_name": model, "provider": "openai", "rate_limit": RATE})
    any_provider = api.post(MODELS, json={"model_name": model, "budget": BUDGET}).json()["model_config"]
    config = created.json()["model_config"]

    duplicate = error(api.post(MODELS, json={"model_name": model, "provider": "openai"}), 409)
    duplicate_any = error(api.post(MODELS, json={"model_name": model}), 409)
    unknown = error(api.post(MODELS, json={"model_name": model, "provider": "nope"}), 422)
    clash = error(api.put(f"{MODELS}/{config['id']}", json={"provider": None}), 409)
    listed = api.get(MODELS, params={"model_name": model}).json()
    only_any = api.get(MODELS, params={"model_name": model, "provider": "*"}).json()

    assert created.status_code == 201 and config["provider"] == "openai"
    assert any_provider["provider"] is None and any_provider["budget"]["max_limit"] == 10
    assert "already exists" in duplicate["message"] and "any provider" in duplicate_any["message"]
    assert unknown["field"] == "provider" and "on any provider already exists" in clash["message"]
    assert listed["count"] == 2 and [c["id"] for c in only_any["model_configs"]] == [any_provider["id"]]
    renamed = api.put(f"{MODELS}/{config['id']}", json={"model_name": model + "-v2"}).json()["model_config"]
    assert renamed["model_name"] == model + "-v2" and renamed["rate_limit"]["id"] == config["rate_limit"]["id"]
    assert api.delete(f"{MODELS}/{config['id']}").status_code == 200
    assert error(api.get(f"{MODELS}/{config['id']}"), 404)


def test_provider_limits_are_set_changed_and_removed_and_keys_never_shown(api: httpx2.Client) -> None:
    listed = api.get("/api/providers").json()
    assert {p["name"] for p in listed["providers"]} == {"openai", "anthropic", "azure"} and listed["count"] == 3
    assert "sk-test-openai" not in api.get("/api/providers").text
    openai = api.get("/api/providers/openai").json()["provider"]
    assert openai["keys"] == [{"id": "key-0", "weight": 1.0, "models": []}] and openai["configured"] is True

    set_ = api.put("/api/providers/anthropic", json={"budget": BUDGET, "rate_limit": RATE}).json()["provider"]
    changed = api.patch("/api/governance/providers/anthropic", json={"budget": {"max_limit": 20}}).json()["provider"]
    removed = api.put("/api/providers/anthropic", json={"budget": None, "rate_limit": None}).json()["provider"]

    assert set_["budget"]["max_limit"] == 10 and set_["rate_limit"]["request_max_limit"] == 60
    assert changed["budget"]["max_limit"] == 20 and changed["budget"]["id"] == set_["budget"]["id"]
    assert removed["budget"] is None and removed["rate_limit"] is None
    assert error(api.get("/api/providers/nope"), 404)["message"] == "provider 'nope' not found"
    assert error(api.put("/api/providers/openai", json={"type": "anthropic"}), 422)["field"] == "type"
    assert [e["action"] for e in audit_of(api, "anthropic")][:3] == ["update", "update", "update"]


def test_spend_logs_and_usage_queries_run_on_this_database(gateway: RunningGateway, api: httpx2.Client) -> None:
    key = api.post(KEYS, json={"name": "spender", "budget": BUDGET}).json()["virtual_key"]
    reply = httpx2.post(f"{gateway.v1}/chat/completions", headers={"Authorization": f"Bearer {key['value']}"},
                        json={"model": "openai/gpt-4o-mini", "max_tokens": 3,
                              "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200, reply.text

    for interval in ("hour", "day"):
        report = api.get("/api/usage/spend", params={"group_by": "key", "interval": interval,
                                                     "virtual_key_id": key["id"]}).json()
        [row] = report["series"]
        assert (row["group"], row["requests"], row["completion_tokens"]) == (key["id"], 1, 3)
        assert row["bucket"] <= report["end"] and row["spend"] == report["total"]["spend"] > 0
    logs = api.get("/api/logs", params={"virtual_key_id": key["id"], "decision": "allow"}).json()
    assert logs["count"] == 1 and logs["logs"][0]["cost"] == report["total"]["spend"]
    assert api.get(f"{KEYS}/{key['id']}").json()["virtual_key"]["budget"]["current_usage"] == pytest.approx(
        logs["logs"][0]["cost"])
