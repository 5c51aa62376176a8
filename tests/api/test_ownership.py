"""Ownership through the real server: every route that changes or deletes an entity
refuses one the config file manages (409 ``managed_by_config``, nothing written) while
its usage may still be reset; and deleting and re-creating an entity, by id or by key
value, never gives it a fresh window (the way a client or a careless operator would
erase spend)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from tests.api.support import MockThread, admin, gateway_config
from tests.api.test_enforcement import chat, denial
from tests.support.gateway import RunningGateway, start_gateway
from tollway.api.ownership import managed_by_config
from tollway.config.loader import CONFIG_PATH_VARIABLE

VK = "tw-owned-by-the-file-0123456789"
KEYS, TEAMS, CUSTOMERS = "/api/governance/virtual-keys", "/api/governance/teams", "/api/governance/customers"
MODEL_CONFIGS = "/api/governance/model-configs"
LIMITS = {"budget": {"max_limit": 5, "reset_duration": "1d"},
          "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1d"}}
GOVERNANCE = {
    "customers": [{"id": "acme", "name": "Acme", **LIMITS}],
    "teams": [{"id": "search", "name": "Search", "customer_id": "acme", **LIMITS}],
    "virtual_keys": [{"id": "vk-file", "name": "file key", "value": VK, "team_id": "search", **LIMITS,
                      "provider_configs": [{"provider": "openai", **LIMITS}]}],
    "model_configs": [{"model_name": "gpt-4o-mini", "provider": "openai", **LIMITS}],
    "tags": [{"name": "support", **LIMITS}],
    "limits": [{"name": "file-rule", "match": {"team": "search"}, "per": "end_user", **LIMITS}],
}
CHANGES = {"put", "patch", "delete", "post"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread) -> Iterator[RunningGateway]:
    settings = gateway_config(f"sqlite:///{tmp_path_factory.mktemp('ownership')}/tollway.db", upstream.url,
                              governance=GOVERNANCE)
    settings["providers"]["openai"] |= LIMITS
    running = start_gateway(settings)
    yield running
    running.stop()


def _path_values(api: httpx2.Client) -> dict[str, str]:
    """A config-managed entity for each path parameter of the management API."""
    [model_config] = api.get(MODEL_CONFIGS, params={"model_name": "gpt-4o-mini"}).json()["model_configs"]
    return {"key_id": "vk-file", "team_id": "search", "customer_id": "acme", "config_id": model_config["id"],
            "name": "openai", "provider": "openai", "tag": "support", "rule": "file-rule",
            "end_user": "someone"}


def _entity_routes(api: httpx2.Client) -> list[tuple[str, str]]:
    """Every documented route that acts on one governed entity or provider, as
    (method, path template): walked from the OpenAPI document, so a new one is covered."""
    document = api.get("/api/openapi.json").json()
    return sorted((method, path) for path, item in document["paths"].items()
                  if path.startswith(("/api/governance/", "/api/providers/")) and "{" in path
                  for method in item if method in CHANGES)


def _snapshot(api: httpx2.Client) -> list[Any]:
    """What the entities hold, without the live usage fields a reset changes."""
    values = _path_values(api)
    shown = [api.get(f"{collection}/{values[param]}").json() for collection, param in (
        (KEYS, "key_id"), (TEAMS, "team_id"), (CUSTOMERS, "customer_id"), (MODEL_CONFIGS, "config_id"),
        ("/api/providers", "name"), ("/api/governance/tags", "tag"), ("/api/governance/limits", "rule"))]
    return [_without_usage(entity) for entity in shown]


def _without_usage(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_usage(v) for k, v in value.items()
                if not k.endswith(("current_usage", "reserved", "last_reset", "reset_at")) and k != "updated_at"}
    if isinstance(value, list):
        return [_without_usage(v) for v in value]
    return value


def test_every_route_that_changes_an_entity_refuses_a_config_managed_one(gateway: RunningGateway, api) -> None:
    values = _path_values(api)
    routes = _entity_routes(api)
    assert len(routes) >= 20, routes  # the walk found the API
    before, audit_before = _snapshot(api), api.get("/api/audit").json()["count"]
    refused, reset = [], []
    for method, template in routes:
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
        answer = api.request(method.upper(), path, json={"rate_limit": None} if method in ("put", "patch") else None,
                             params={"cascade": "true"} if method == "delete" else None)
        if template.endswith("/reset"):
            assert answer.status_code == 200, (method, path, answer.text)
            reset.append(path)
            continue
        assert answer.status_code == 409, (method, path, answer.text)
        error = answer.json()["error"]
        assert error["type"] == "managed_by_config", error
        assert "is managed by the config file" in error["message"] and "restart" in error["message"], error
        refused.append((method, template))
    assert _snapshot(api) == before  # nothing written by any refused route
    others = [entry for entry in api.get("/api/audit", params={"limit": 1000}).json()["entries"]
              if entry["action"] != "reset"]
    assert api.get("/api/audit").json()["count"] - audit_before == len(reset)
    assert len(others) == audit_before
    kinds = {template.split("/")[3] if template.startswith("/api/governance") else "providers"
             for _, template in refused}
    assert kinds == {"virtual-keys", "teams", "customers", "model-configs", "providers", "tags", "limits"}
    assert ("delete", "/api/governance/virtual-keys/{key_id}") in refused


def test_the_refusal_names_the_section_to_edit(api) -> None:
    messages = {path: api.put(path, json={}).json()["error"]["message"] for path in (
        f"{KEYS}/vk-file", f"{TEAMS}/search", f"{CUSTOMERS}/acme", "/api/providers/openai")}
    assert "`governance.virtual_keys`" in messages[f"{KEYS}/vk-file"]
    assert "`governance.teams`" in messages[f"{TEAMS}/search"]
    assert "`governance.customers`" in messages[f"{CUSTOMERS}/acme"]
    assert "`providers`" in messages["/api/providers/openai"]


def test_entities_show_who_manages_them(api) -> None:
    created = api.post(KEYS, json={"id": "vk-made-here", "name": "made here", "team_id": "search"})
    assert created.status_code == 201, created.text
    keys = {key["id"]: key["managed_by"] for key in api.get(KEYS).json()["virtual_keys"]}
    assert keys == {"vk-file": "config", "vk-made-here": "api"}
    assert api.get(f"{TEAMS}/search").json()["team"]["managed_by"] == "config"
    assert api.get("/api/providers/anthropic").json()["provider"]["managed_by"] == "api"  # no limits in the file
    assert api.put(f"{KEYS}/vk-made-here", json={"is_active": False}).status_code == 200  # the API's own: allowed
    assert api.delete(f"{KEYS}/vk-made-here").status_code == 200


# -- deleting and re-creating never gives a fresh window ---------------------------------------------

ONE_REQUEST = {"rate_limit": {"request_max_limit": 1, "request_reset_duration": "1d"}}


@pytest.fixture
def fresh(database_url: str, upstream: MockThread) -> Iterator[tuple[RunningGateway, httpx2.Client]]:
    """A gateway of its own (SQLite or PostgreSQL), with no governance in its file."""
    running = start_gateway(gateway_config(database_url, upstream.url))
    try:
        with admin(running) as client:
            yield running, client
    finally:
        running.stop()


def _create(api: httpx2.Client, collection: str, **body: Any) -> dict[str, Any]:
    answer = api.post(collection, json=body)
    assert answer.status_code == 201, answer.text
    return next(value for key, value in answer.json().items() if key != "message")


def _delete(api: httpx2.Client, path: str, **params: Any) -> None:
    answer = api.delete(path, params=params)
    assert answer.status_code == 200, answer.text


def _used_up(gateway: RunningGateway, value: str) -> None:
    chat(gateway, value)
    denial(gateway, value, 429)


def test_a_key_deleted_and_created_again_keeps_its_window_by_id_and_by_value(fresh) -> None:
    gateway, api = fresh
    value = _create(api, KEYS, id="vk-a", name="a", **ONE_REQUEST)["value"]
    _used_up(gateway, value)

    _delete(api, f"{KEYS}/vk-a")
    _create(api, KEYS, id="vk-a", name="same id, same value", value=value, **ONE_REQUEST)
    denial(gateway, value, 429)

    _delete(api, f"{KEYS}/vk-a")
    _create(api, KEYS, id="vk-b", name="other id, same value", value=value, **ONE_REQUEST)
    denial(gateway, value, 429)

    _delete(api, f"{KEYS}/vk-b")
    other_value = _create(api, KEYS, id="vk-b", name="same id, other value", **ONE_REQUEST)["value"]
    denial(gateway, other_value, 429)

    _delete(api, f"{KEYS}/vk-b")
    unrelated = _create(api, KEYS, id="vk-c", name="neither", **ONE_REQUEST)["value"]
    chat(gateway, unrelated)  # a new key is not caught by someone else's usage


@pytest.mark.parametrize("owner", ["team", "customer"])
def test_an_owner_deleted_and_created_again_keeps_its_window(fresh, owner: str) -> None:
    gateway, api = fresh
    collection = TEAMS if owner == "team" else CUSTOMERS
    _create(api, collection, id="owner", name="first", **ONE_REQUEST)
    _used_up(gateway, _create(api, KEYS, id="k1", name="k1", **{f"{owner}_id": "owner"})["value"])

    _delete(api, f"{collection}/owner", cascade="true")  # with its keys: every part of the chain goes
    _create(api, collection, id="owner", name="again", **ONE_REQUEST)
    value = _create(api, KEYS, id="k2", name="k2", **{f"{owner}_id": "owner"})["value"]

    assert denial(gateway, value, 429)["scope"] == {"level": owner, "id": "owner", "name": "again"}


def test_a_limit_removed_and_added_again_keeps_its_usage(fresh) -> None:
    gateway, api = fresh
    key = _create(api, KEYS, id="vk-budget", name="b", budget={"max_limit": 10, "reset_duration": "1d"})
    chat(gateway, key["value"])
    spent = api.get(f"{KEYS}/vk-budget").json()["virtual_key"]["budget"]["current_usage"]
    assert spent > 0
    assert api.put(f"{KEYS}/vk-budget", json={"budget": None}).status_code == 200
    again = api.put(f"{KEYS}/vk-budget", json={"budget": {"max_limit": 10, "reset_duration": "1d"}})
    assert again.json()["virtual_key"]["budget"]["current_usage"] == spent
    reset = api.post(f"{KEYS}/vk-budget/budget/reset")  # the explicit way stays open
    assert reset.json()["virtual_key"]["budget"]["current_usage"] == 0

    config = _create(api, MODEL_CONFIGS, model_name="gpt-4o", provider="openai", **ONE_REQUEST)
    client = openai.OpenAI(base_url=gateway.v1, api_key=key["value"], max_retries=0)
    client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    _delete(api, f"{MODEL_CONFIGS}/{config['id']}")
    _create(api, MODEL_CONFIGS, model_name="gpt-4o", provider="openai", **ONE_REQUEST)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=5)


def test_a_rate_limit_side_switched_off_and_on_again_keeps_its_usage(fresh) -> None:
    gateway, api = fresh
    both = {"request_max_limit": 1, "request_reset_duration": "1d", "token_max_limit": 100_000,
            "token_reset_duration": "1d"}
    value = _create(api, KEYS, id="vk-sides", name="sides", rate_limit=both)["value"]
    _used_up(gateway, value)
    off = api.put(f"{KEYS}/vk-sides", json={"rate_limit": {"request_max_limit": None, "request_reset_duration": None}})
    assert off.status_code == 200, off.text
    chat(gateway, value)  # no request limit now
    on = api.put(f"{KEYS}/vk-sides", json={"rate_limit": {"request_max_limit": 1, "request_reset_duration": "1d"}})
    assert on.status_code == 200, on.text
    denial(gateway, value, 429)  # the request counted before is still there: no fresh window


def test_the_refusal_names_the_config_file_when_the_gateway_knows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_PATH_VARIABLE, "/etc/tollway/tollway.yaml")  # what `tollway serve --config` sets
    message = managed_by_config("team", "search").message
    assert "managed by the config file (/etc/tollway/tollway.yaml)" in message
    monkeypatch.delenv(CONFIG_PATH_VARIABLE)
    assert "managed by the config file, so" in managed_by_config("team", "search").message
