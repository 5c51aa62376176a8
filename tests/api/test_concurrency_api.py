"""Concurrency limits through the management API, on SQLite and PostgreSQL: a sibling of
``budget`` and ``rate_limit`` on every governed entity, partial updates, validation that
names the field and writes nothing, live ``in_flight`` in views and in the usage API."""

from __future__ import annotations

import threading
import time

import httpx2
import openai
import pytest

from tests.api.support import MockThread, error, unique
from tests.support.gateway import RunningGateway

KEYS = "/api/governance/virtual-keys"
SLOTS = {"max_in_flight": 4, "queue_timeout_ms": 1500}


@pytest.mark.parametrize(("path", "kind", "body"), [
    (KEYS, "virtual_key", {"name": "k"}),
    ("/api/governance/teams", "team", {"name": "t"}),
    ("/api/governance/customers", "customer", {"name": "c"}),
    ("/api/governance/model-configs", "model_config", {"model_name": "gpt-4o", "provider": "openai"}),
])
def test_every_entity_takes_a_concurrency_limit_and_shows_it_live(api: httpx2.Client, path: str, kind: str,
                                                                   body: dict) -> None:
    if kind != "model_config":
        body = {**body, "id": unique(kind)}
    else:
        body = {**body, "model_name": unique("model")}
    created = api.post(path, json={**body, "concurrency": SLOTS}).json()[kind]
    concurrency = created["concurrency"]
    assert {k: concurrency[k] for k in ("max_in_flight", "queue_timeout_ms", "in_flight")} == {**SLOTS, "in_flight": 0}
    ident = created["id"]
    changed = api.put(f"{path}/{ident}", json={"concurrency": {"max_in_flight": 9}}).json()[kind]["concurrency"]
    assert (changed["id"], changed["max_in_flight"], changed["queue_timeout_ms"]) == (concurrency["id"], 9, 1500)
    assert api.put(f"{path}/{ident}", json={"concurrency": None}).json()[kind]["concurrency"] is None


def test_a_key_provider_config_and_a_provider_take_one_too(api: httpx2.Client) -> None:
    key = api.post(KEYS, json={"id": unique("vk"), "name": "k", "provider_configs": [
        {"provider": "openai", "concurrency": {"max_in_flight": 2}}]}).json()["virtual_key"]
    assert key["provider_configs"][0]["concurrency"]["max_in_flight"] == 2
    provider = api.put("/api/providers/anthropic", json={"concurrency": {"max_in_flight": 7}}).json()["provider"]
    assert provider["concurrency"]["max_in_flight"] == 7
    assert api.put("/api/providers/anthropic", json={"concurrency": None}).json()["provider"]["concurrency"] is None


@pytest.mark.parametrize(("concurrency", "field", "fragment"), [
    ({"max_in_flight": 0}, "concurrency.max_in_flight", "greater than 0"),
    ({"max_in_flight": -3}, "concurrency.max_in_flight", "greater than 0"),
    ({"max_in_flight": "many"}, "concurrency.max_in_flight", "integer"),
    ({"max_in_flight": 2, "queue_timeout_ms": -1}, "concurrency.queue_timeout_ms", "greater than or equal to 0"),
    ({"max_in_flight": 2, "queue_timeout_ms": 3_600_000}, "concurrency.queue_timeout_ms", "less than or equal"),
    ({"queue_timeout_ms": 100}, "concurrency.max_in_flight", "required"),
    ({"max_in_flight": 2, "burst": 1}, "concurrency.burst", "unknown field"),
])
def test_bad_concurrency_limits_are_422_naming_the_field_and_write_nothing(api: httpx2.Client, concurrency: dict,
                                                                           field: str, fragment: str) -> None:
    ident = unique("vk")
    problem = error(api.post(KEYS, json={"id": ident, "name": "k", "concurrency": concurrency}), 422)
    assert field in {detail["field"] for detail in problem["details"]}, problem
    assert fragment in problem["message"].lower() or any(fragment in d["message"].lower() for d in problem["details"])
    assert api.get(f"{KEYS}/{ident}").status_code == 404
    key = api.post(KEYS, json={"id": ident, "name": "k"}).json()["virtual_key"]
    problem = error(api.put(f"{KEYS}/{ident}", json={"name": "changed", "concurrency": concurrency}), 422)
    assert field in {detail["field"] for detail in problem["details"]}, problem
    assert api.get(f"{KEYS}/{ident}").json()["virtual_key"] == key | {"value": None}


def test_in_flight_shows_in_the_key_view_and_the_usage_api_while_a_request_runs(
        gateway: RunningGateway, api: httpx2.Client, upstream: MockThread) -> None:
    created = api.post(KEYS, json={"id": unique("vk"), "name": "k", "concurrency": {"max_in_flight": 3}}).json()
    key, value = created["virtual_key"], created["virtual_key"]["value"]
    upstream.mock.settings.latency_ms = 1500
    client = openai.OpenAI(base_url=gateway.v1, api_key=value, max_retries=0)
    try:
        thread = threading.Thread(target=lambda: client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]))
        thread.start()
        deadline = time.monotonic() + 5
        while api.get(f"{KEYS}/{key['id']}").json()["virtual_key"]["concurrency"]["in_flight"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        usage = api.get("/api/governance/usage", params={"kind": "in_flight", "id": key["id"]}).json()["usage"]
        assert [(u["level"], u["limit"], u["reserved"], u["remaining"], u["duration"]) for u in usage] == [
            ("virtual_key", 3, 1, 2, None)]
        thread.join(10)
    finally:
        upstream.mock.settings.latency_ms = 0
    assert api.get(f"{KEYS}/{key['id']}").json()["virtual_key"]["concurrency"]["in_flight"] == 0


def test_explain_shows_the_in_flight_limit_without_a_window(api: httpx2.Client) -> None:
    key = api.post(KEYS, json={"id": unique("vk"), "name": "k", "concurrency": {"max_in_flight": 2}}).json()
    explained = api.post("/api/governance/explain", json={"virtual_key_id": key["virtual_key"]["id"],
                                                           "model": "openai/gpt-4o-mini"})
    assert explained.status_code == 200, explained.text
    body = explained.json()
    limits = [limit for limit in body["limits"] if limit["kind"] == "in_flight"]
    assert body["allowed"] is True
    assert [(lim["level"], lim["limit"], lim["reserved"], lim["remaining"], lim["duration"], lim["reset_at"])
            for lim in limits] == [("virtual_key", 2, 0, 2, None, None)]
