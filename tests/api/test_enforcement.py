"""Changes made through the management API govern the very next request, and what the
API reports (usage, spend, logs, explain) matches what the gateway did. Real server,
real SQLite file, mock upstream, the official openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from tests.api.support import MockThread, eventually, gateway_config, unique
from tests.support.gateway import RunningGateway, start_gateway

KEYS = "/api/governance/virtual-keys"
MODEL = "openai/gpt-4o-mini"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread) -> Iterator[RunningGateway]:
    url = f"sqlite:///{tmp_path_factory.mktemp('enforcement')}/tollway.db"
    running = start_gateway(gateway_config(url, upstream.url))
    yield running
    running.stop()


def new_key(api: httpx2.Client, **body: Any) -> dict[str, Any]:
    response = api.post(KEYS, json={"id": unique("vk"), "name": "test key", **body})
    assert response.status_code == 201, response.text
    return response.json()["virtual_key"]


def chat(gateway: RunningGateway, value: str, max_tokens: int = 5) -> Any:
    client = openai.OpenAI(base_url=gateway.v1, api_key=value, max_retries=0)
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hello"}],
                                          max_tokens=max_tokens)


def denial(gateway: RunningGateway, value: str, status: int) -> dict[str, Any]:
    with pytest.raises(openai.APIStatusError) as caught:
        chat(gateway, value)
    assert caught.value.status_code == status, caught.value.body
    body = caught.value.body
    return body.get("error", body) if isinstance(body, dict) else {}


def explain(api: httpx2.Client, **query: Any) -> dict[str, Any]:
    response = api.post("/api/governance/explain", json={"model": MODEL, **query})
    assert response.status_code == 200, response.text
    return response.json()


def usage_of(api: httpx2.Client, entity_id: str) -> dict[str, dict[str, Any]]:
    entries = api.get("/api/governance/usage", params={"id": entity_id}).json()["usage"]
    return {entry["kind"]: entry for entry in entries}


def test_a_key_created_through_the_api_works_with_the_openai_sdk_at_once(gateway, api) -> None:
    key = new_key(api)

    reply = chat(gateway, key["value"])

    assert reply.usage.completion_tokens == 5
    logs = eventually(lambda: api.get("/api/logs", params={"virtual_key_id": key["id"]}).json(),
                      lambda page: page["count"] == 1)
    assert logs["logs"][0]["decision"] == "allow" and logs["logs"][0]["status"] == 200


def test_a_lowered_request_limit_binds_on_the_next_request(gateway, api) -> None:
    key = new_key(api, rate_limit={"request_max_limit": 10, "request_reset_duration": "1m"})
    chat(gateway, key["value"])
    chat(gateway, key["value"])

    lowered = api.put(f"{KEYS}/{key['id']}", json={"rate_limit": {"request_max_limit": 2}}).json()["virtual_key"]
    error = denial(gateway, key["value"], 429)

    assert lowered["rate_limit"]["request_current_usage"] == 2  # usage kept across the change
    assert error["type"] == "request_limited"
    assert error["scope"] == {"level": "virtual_key", "id": key["id"], "name": "test key"}


def test_blocking_a_key_denies_its_next_request(gateway, api) -> None:
    key = new_key(api)
    chat(gateway, key["value"])

    api.patch(f"{KEYS}/{key['id']}", json={"is_active": False})
    error = denial(gateway, key["value"], 403)
    api.patch(f"{KEYS}/{key['id']}", json={"is_active": True})

    assert error["type"] == "virtual_key_blocked"
    assert chat(gateway, key["value"]).usage.completion_tokens == 5


def test_explain_agrees_with_what_the_gateway_decides(gateway, api) -> None:
    team = api.post("/api/governance/teams", json={
        "id": unique("team"), "name": "Explained",
        "rate_limit": {"request_max_limit": 2, "request_reset_duration": "1m"}}).json()["team"]
    key = new_key(api, team_id=team["id"], budget={"max_limit": 100, "reset_duration": "1d"})

    before = explain(api, virtual_key=key["value"])
    chat(gateway, key["value"])
    chat(gateway, key["value"])
    at_limit = explain(api, virtual_key=key["value"])
    by_id = explain(api, virtual_key_id=key["id"])
    error = denial(gateway, key["value"], 429)

    assert (before["allowed"], before["decision"], before["status"]) == (True, "allow", 200)
    levels = {(limit["level"], limit["kind"]) for limit in before["limits"]}
    assert levels == {("team", "requests"), ("virtual_key", "budget")}
    [binding] = [limit for limit in at_limit["limits"] if limit["binding"]]
    assert (binding["level"], binding["id"], binding["used"], binding["remaining"]) == ("team", team["id"], 2, 0)
    assert (at_limit["allowed"], at_limit["status"]) == (False, 429)
    assert error["type"] == at_limit["decision"] == by_id["decision"] == "request_limited"
    assert error["scope"] == at_limit["scope"] == by_id["scope"] == {"level": "team", "id": team["id"],
                                                                     "name": "Explained"}
    assert at_limit["team_id"] == team["id"] and by_id["virtual_key_id"] == key["id"]
    assert usage_of(api, team["id"])["requests"]["reserved"] == 0  # explaining reserved nothing


def test_explain_predicts_a_budget_denial(gateway, api) -> None:
    key = new_key(api, budget={"max_limit": "0.000001", "reset_duration": "1d"})

    predicted = explain(api, virtual_key=key["value"], prompt_tokens=20, completion_tokens=5)
    error = denial(gateway, key["value"], 402)

    assert predicted["decision"] == error["type"] == "budget_exceeded"
    assert predicted["scope"] == error["scope"] == {"level": "virtual_key", "id": key["id"], "name": "test key"}
    assert predicted["estimated_tokens"] == 25 and predicted["estimated_cost"] > 0.000001


def test_explain_errors(api) -> None:
    assert api.post("/api/governance/explain", json={"model": "nope/x"}).json()["error"]["field"] == "model"
    assert api.post("/api/governance/explain", json={"model": "x", "provider": "nope"}).status_code == 422
    assert api.post("/api/governance/explain", json={"model": MODEL, "virtual_key_id": "none"}).status_code == 404
    unknown = explain(api, virtual_key="tw-unknown-0123456789abcdef")
    assert (unknown["decision"], unknown["status"]) == ("virtual_key_not_found", 401)
    query = api.get("/api/governance/explain", params={"model": MODEL, "prompt_tokens": 3, "completion_tokens": 4})
    assert query.status_code == 200 and query.json()["estimated_tokens"] == 7
    assert api.get("/api/governance/explain").status_code == 400  # model is required


def test_usage_reflects_requests_just_made(gateway, api) -> None:
    key = new_key(api, budget={"max_limit": 5, "reset_duration": "1d"},
                  rate_limit={"request_max_limit": 100, "request_reset_duration": "1m",
                              "token_max_limit": 100000, "token_reset_duration": "1h"})

    tokens = sum(chat(gateway, key["value"]).usage.total_tokens for _ in range(3))

    usage = usage_of(api, key["id"])
    assert (usage["requests"]["used"], usage["requests"]["limit"], usage["requests"]["remaining"]) == (3, 100, 97)
    assert usage["tokens"]["used"] == tokens and usage["tokens"]["reserved"] == 0
    assert 0 < usage["budget"]["used"] < 5 and usage["budget"]["unit"] == "usd"
    assert 0 < usage["requests"]["reset_in_s"] <= 60
    shown = api.get(f"{KEYS}/{key['id']}").json()["virtual_key"]
    assert shown["rate_limit"]["request_current_usage"] == 3 and shown["rate_limit"]["token_current_usage"] == tokens
    assert shown["budget"]["current_usage"] == usage["budget"]["used"]


def test_spend_and_logs_group_and_filter_what_happened(gateway, api) -> None:
    customer = api.post("/api/governance/customers", json={"id": unique("spender"), "name": "S"}).json()["customer"]
    busy = new_key(api, customer_id=customer["id"])
    limited = new_key(api, customer_id=customer["id"], rate_limit={"request_max_limit": 1, "request_reset_duration": "1m"})
    costs = [chat(gateway, busy["value"]).usage.total_tokens for _ in range(2)]
    chat(gateway, limited["value"])
    denial(gateway, limited["value"], 429)

    by_key = eventually(lambda: api.get("/api/usage/spend", params={"group_by": "key", "customer_id": customer["id"]}).json(),
                        lambda report: report["total"]["requests"] == 4)
    by_model = api.get("/api/usage/spend", params={"group_by": "model", "interval": "hour",
                                                   "customer_id": customer["id"]}).json()
    denied = api.get("/api/logs", params={"decision": "request_limited", "customer_id": customer["id"]}).json()

    rows = {row["group"]: row for row in by_key["series"]}
    assert set(rows) == {busy["id"], limited["id"]}
    assert (rows[busy["id"]]["requests"], rows[busy["id"]]["total_tokens"]) == (2, sum(costs))
    assert (rows[limited["id"]]["requests"], rows[limited["id"]]["denied_requests"]) == (2, 1)
    assert rows[busy["id"]]["spend"] > 0 and by_key["total"]["spend"] == pytest.approx(
        rows[busy["id"]]["spend"] + rows[limited["id"]]["spend"])
    [model_row] = by_model["series"]
    assert (model_row["group"], model_row["requests"]) == ("gpt-4o-mini", 4) and model_row["bucket"].endswith(":00:00Z")
    assert denied["count"] == 1
    assert (denied["logs"][0]["virtual_key_id"], denied["logs"][0]["status"]) == (limited["id"], 429)
    assert denied["logs"][0]["denied_level"] == "virtual_key"
    assert api.get("/api/usage/spend", params={"group_by": "colour"}).status_code == 400


def test_logs_and_spend_by_route(gateway, api) -> None:
    customer = api.post("/api/governance/customers", json={"id": unique("router"), "name": "R"}).json()["customer"]
    key = new_key(api, customer_id=customer["id"])
    client = openai.OpenAI(base_url=gateway.v1, api_key=key["value"], max_retries=0)
    chat(gateway, key["value"])
    chat(gateway, key["value"])
    client.moderations.create(model="openai/omni-moderation-latest", input="hello")
    client.audio.speech.create(model="openai/tts-1", voice="alloy", input="hello")

    by_route = eventually(lambda: api.get("/api/usage/spend", params={"group_by": "route",
                                                                       "customer_id": customer["id"]}).json(),
                          lambda report: report["total"]["requests"] == 4)
    assert {row["group"]: row["requests"] for row in by_route["series"]} == {"chat": 2, "moderations": 1,
                                                                            "audio.speech": 1}
    only_chat = api.get("/api/usage/spend", params={"route": "chat", "customer_id": customer["id"]}).json()
    assert only_chat["total"]["requests"] == 2
    everywhere = {row["group"]: row["requests"] for row in
                  api.get("/api/usage/spend", params={"group_by": "route"}).json()["series"]}
    assert everywhere["moderations"] >= 1 and everywhere["audio.speech"] >= 1 and everywhere["chat"] >= 2
    logged = api.get("/api/logs", params={"route": "audio.speech", "customer_id": customer["id"]}).json()
    assert logged["count"] == 1 and logged["logs"][0]["route"] == "audio.speech"
    assert logged["logs"][0]["virtual_key_id"] == key["id"]
    assert api.get(f"/api/logs/{logged['logs'][0]['id']}").json()["log"]["route"] == "audio.speech"


def test_reset_endpoints_restore_room_and_are_audited(gateway, api) -> None:
    key = new_key(api, budget={"max_limit": 5, "reset_duration": "1d"},
                  rate_limit={"request_max_limit": 1, "request_reset_duration": "1h"})
    chat(gateway, key["value"])
    denial(gateway, key["value"], 429)

    rate = api.post(f"{KEYS}/{key['id']}/rate-limit/reset").json()["virtual_key"]["rate_limit"]
    budget = api.post(f"{KEYS}/{key['id']}/budget/reset").json()["virtual_key"]["budget"]

    assert rate["request_current_usage"] == 0 and budget["current_usage"] == 0
    assert chat(gateway, key["value"]).usage.completion_tokens == 5
    resets = api.get("/api/audit", params={"entity_id": key["id"], "action": "reset"}).json()["entries"]
    assert [entry["actor"] for entry in resets] == ["admin", "admin"]
    budget_reset, rate_reset = resets
    assert rate_reset["before"]["rate_limit"]["request_current_usage"] == 1
    assert rate_reset["after"]["rate_limit"]["request_current_usage"] == 0
    assert budget_reset["before"]["budget"]["current_usage"] > 0 and budget_reset["after"]["budget"]["current_usage"] == 0
    assert api.post(f"/api/governance/teams/{unique('none')}/budget/reset").status_code == 404
    no_budget = new_key(api)
    assert "has no budget" in api.post(f"{KEYS}/{no_budget['id']}/budget/reset").json()["error"]["message"]


def test_other_levels_reset_too_and_updates_may_reset_usage(gateway, api) -> None:
    model = api.post("/api/governance/model-configs", json={
        "model_name": "gpt-4o-mini", "provider": "openai",
        "rate_limit": {"request_max_limit": 1000, "request_reset_duration": "1h"}}).json()["model_config"]
    api.put("/api/providers/openai", json={"rate_limit": {"request_max_limit": 1000, "request_reset_duration": "1h"}})
    key = new_key(api, provider_configs=[{"provider": "openai", "budget": {"max_limit": 5, "reset_duration": "1d"}}],
                  rate_limit={"request_max_limit": 50, "request_reset_duration": "1h"})
    chat(gateway, key["value"])

    provider = api.post("/api/providers/openai/rate-limit/reset").json()["provider"]
    config = api.post(f"/api/governance/model-configs/{model['id']}/rate-limit/reset").json()["model_config"]
    pc = api.post(f"{KEYS}/{key['id']}/provider-configs/openai/budget/reset").json()["virtual_key"]
    updated = api.put(f"{KEYS}/{key['id']}", params={"reset_usage": "true"},
                      json={"rate_limit": {"request_max_limit": 40}}).json()["virtual_key"]

    assert provider["rate_limit"]["request_current_usage"] == 0
    assert config["rate_limit"]["request_current_usage"] == 0
    assert pc["provider_configs"][0]["budget"]["current_usage"] == 0
    assert (updated["rate_limit"]["request_max_limit"], updated["rate_limit"]["request_current_usage"]) == (40, 0)
    api.delete(f"/api/governance/model-configs/{model['id']}")
    api.put("/api/providers/openai", json={"rate_limit": None})
