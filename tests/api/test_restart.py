"""Restarts after every kind of change, for every kind of entity, on SQLite and
PostgreSQL, through the real server: what the config file declares is the file's at
every start, what the API made stays as the API left it, and usage survives all of it
(restarts, removal from the file, delete and re-create)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import openai
import pytest

from tests.api.support import MockThread, admin, gateway_config
from tests.support.gateway import RunningGateway, start_gateway

VK = "tw-restart-0123456789abcdefgh"
MODEL = "openai/gpt-4o-mini"
KIND_PATHS = {"virtual_key": "/api/governance/virtual-keys", "team": "/api/governance/teams",
              "customer": "/api/governance/customers", "model_config": "/api/governance/model-configs",
              "provider": "/api/providers"}


def rate(limit: int = 100) -> dict[str, Any]:
    return {"request_max_limit": limit, "request_reset_duration": "1d"}


def file_governance(suffix: str = "", limit: int = 100) -> dict[str, Any]:
    """A customer, its team, the team's key and a model config, each with a request limit."""
    return {
        "customers": [{"id": "acme", "name": "Acme" + suffix, "rate_limit": rate(limit)}],
        "teams": [{"id": "search", "name": "Search" + suffix, "customer_id": "acme", "rate_limit": rate(limit)}],
        "virtual_keys": [{"id": "vk-1", "name": "search key" + suffix, "value": VK, "team_id": "search",
                          "rate_limit": rate(limit)}],
        "model_configs": [{"model_name": "gpt-4o-mini", "provider": "openai", "rate_limit": rate(limit)}],
    }


def config(database_url: str, upstream: MockThread, governance: dict[str, Any] | None,
           provider_limit: int | None) -> dict[str, Any]:
    settings = gateway_config(database_url, upstream.url, governance=copy.deepcopy(governance or {}))
    if provider_limit is not None:
        settings["providers"]["openai"]["rate_limit"] = rate(provider_limit)
    return settings


@contextmanager
def running(settings: dict[str, Any]) -> Iterator[tuple[RunningGateway, httpx2.Client]]:
    """A gateway started from ``settings`` and stopped (usage flushed) afterwards."""
    gateway = start_gateway(copy.deepcopy(settings))
    try:
        with admin(gateway) as api:
            yield gateway, api
    finally:
        gateway.stop()


def chat(gateway: RunningGateway) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key=VK, max_retries=0)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5)


def entities(api: httpx2.Client) -> dict[str, dict[str, Any] | None]:
    """The entities of these tests by kind, None where there is none."""
    found: dict[str, dict[str, Any] | None] = {}
    for kind, ident in (("virtual_key", "vk-1"), ("team", "search"), ("customer", "acme"), ("provider", "openai")):
        answer = api.get(f"{KIND_PATHS[kind]}/{ident}")
        assert answer.status_code in (200, 404), answer.text
        found[kind] = answer.json()[kind] if answer.status_code == 200 else None
    configs = api.get(KIND_PATHS["model_config"], params={"model_name": "gpt-4o-mini", "provider": "openai"})
    found["model_config"] = next(iter(configs.json()["model_configs"]), None)
    return found


def used(entity: dict[str, Any] | None) -> int | None:
    """Requests counted in the entity's window (None: no entity or no rate limit)."""
    limit = (entity or {}).get("rate_limit")
    return None if limit is None else limit["request_current_usage"]


def summary(api: httpx2.Client) -> dict[str, tuple[Any, ...]]:
    """Per kind: (managed_by, request limit, requests used, name), or None."""
    out: dict[str, tuple[Any, ...]] = {}
    for kind, entity in entities(api).items():
        if entity is None:
            out[kind] = ()
            continue
        limit = entity["rate_limit"]["request_max_limit"] if entity["rate_limit"] else None
        out[kind] = (entity["managed_by"], limit, used(entity), entity.get("name"))
    return out


def audit_count(api: httpx2.Client) -> int:
    return len(api.get("/api/audit", params={"limit": 1000}).json()["entries"])


def test_config_managed_entities_follow_the_file_at_every_start_and_keep_their_usage(
        database_url: str, upstream: MockThread) -> None:
    original = config(database_url, upstream, file_governance(), provider_limit=100)
    with running(original) as (gateway, api):
        chat(gateway)
        first = summary(api)
        change_through_api(api, lambda body: body | {"rate_limit": rate(1)}, status=409)  # refused, all of them
        delete_through_api(api, status=409)
        writes = audit_count(api)
    assert first == {"virtual_key": ("config", 100, 1, "search key"), "team": ("config", 100, 1, "Search"),
                     "customer": ("config", 100, 1, "Acme"), "provider": ("config", 100, 1, "openai"),
                     "model_config": ("config", 100, 1, None)}

    with running(original) as (gateway, api):  # the same file: nothing written, usage kept
        assert summary(api) == first
        assert audit_count(api) == writes

    changed = config(database_url, upstream, file_governance(" v2", limit=50), provider_limit=50)
    with running(changed) as (gateway, api):
        assert summary(api) == {
            "virtual_key": ("config", 50, 1, "search key v2"), "team": ("config", 50, 1, "Search v2"),
            "customer": ("config", 50, 1, "Acme v2"), "provider": ("config", 50, 1, "openai"),
            "model_config": ("config", 50, 1, None)}

    emptied = config(database_url, upstream, None, provider_limit=None)
    with running(emptied) as (gateway, api):  # removed from the file: deleted, the key revoked
        gone = entities(api)
        with pytest.raises(openai.AuthenticationError):
            chat(gateway)
    assert [kind for kind, entity in gone.items() if entity is not None] == ["provider"]
    assert gone["provider"] is not None
    assert (gone["provider"]["managed_by"], gone["provider"]["rate_limit"]) == ("api", None)

    with running(original) as (gateway, api):  # declared again: the retained usage comes back
        assert summary(api) == first


def test_api_managed_entities_stay_as_the_api_left_them_across_restarts(
        database_url: str, upstream: MockThread, caplog: pytest.LogCaptureFixture) -> None:
    bare = config(database_url, upstream, None, provider_limit=None)
    with running(bare) as (gateway, api):
        create_through_api(api, file_governance(" (api)"))
        chat(gateway)
        change_through_api(api, lambda body: body | {"rate_limit": rate(40)})
        changed = summary(api)
    assert changed == {"virtual_key": ("api", 40, 1, "search key (api)"), "team": ("api", 40, 1, "Search (api)"),
                       "customer": ("api", 40, 1, "Acme (api)"), "provider": ("api", 40, 1, "openai"),
                       "model_config": ("api", 40, 1, None)}

    with running(bare) as (gateway, api):
        assert summary(api) == changed
        delete_through_api(api)
        deleted = summary(api)
    assert deleted == {"virtual_key": (), "team": (), "customer": (), "model_config": (),
                       "provider": ("api", None, None, "openai")}

    with running(bare) as (gateway, api):
        assert summary(api) == deleted  # deleted stays deleted
        create_through_api(api, file_governance(" (again)"))  # same ids, same key value
        recreated = summary(api)
    assert all(entry[2] == 1 for entry in recreated.values()), recreated  # no fresh window by re-creating

    caplog.set_level(logging.WARNING, logger="tollway.store.ownership")
    declared = config(database_url, upstream, file_governance(" (file)"), provider_limit=70)
    with running(declared) as (gateway, api):
        taken_over = summary(api)
    assert taken_over == {
        "virtual_key": ("config", 100, 1, "search key (file)"), "team": ("config", 100, 1, "Search (file)"),
        "customer": ("config", 100, 1, "Acme (file)"), "provider": ("config", 70, 1, "openai"),
        "model_config": ("config", 100, 1, None)}
    warned = " ".join(record.getMessage() for record in caplog.records)
    for where in ("governance.virtual_keys 'vk-1'", "governance.teams 'search'", "governance.customers 'acme'",
                  "governance.model_configs 'gpt-4o-mini' on openai", "providers.openai"):
        assert f"{where} was managed through the management API" in warned


def create_through_api(api: httpx2.Client, governance: dict[str, Any]) -> None:
    """Create what ``governance`` declares through the API, and give openai its limits."""
    for kind, section in (("customer", "customers"), ("team", "teams"), ("virtual_key", "virtual_keys"),
                          ("model_config", "model_configs")):
        for body in governance[section]:
            answer = api.post(KIND_PATHS[kind], json=body)
            assert answer.status_code == 201, answer.text
    answer = api.put(f"{KIND_PATHS['provider']}/openai", json={"rate_limit": rate()})
    assert answer.status_code == 200, answer.text


def change_through_api(api: httpx2.Client, change: Callable[[dict[str, Any]], dict[str, Any]],
                       status: int = 200) -> None:
    for kind, entity in entities(api).items():
        assert entity is not None
        ident = entity["id"] if kind != "provider" else entity["name"]
        answer = api.put(f"{KIND_PATHS[kind]}/{ident}", json=change({}))
        assert answer.status_code == status, answer.text


def delete_through_api(api: httpx2.Client, status: int = 200) -> None:
    """Delete every entity (cascading), and take openai's limits off."""
    found = entities(api)
    for kind in ("virtual_key", "team", "customer", "model_config"):
        entity = found[kind]
        assert entity is not None
        answer = api.delete(f"{KIND_PATHS[kind]}/{entity['id']}", params={"cascade": "true"})
        assert answer.status_code == status, answer.text
    answer = api.put(f"{KIND_PATHS['provider']}/openai", json={"rate_limit": None})
    assert answer.status_code == status, answer.text
