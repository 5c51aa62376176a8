"""Key lifecycle through the real server: ``expires_at`` (401 ``virtual_key_expired``),
rotation with a grace period, and ``last_used_at`` written with the usage flush — with
the official SDKs as clients and the gateway on an injected clock (no sleeps)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from sqlalchemy import select

from tests.api.support import MockThread, gateway_config, unique
from tests.support.gateway import RunningGateway, start_gateway
from tollway.store.tables import VirtualKey

KEYS = "/api/governance/virtual-keys"
MODEL = "openai/gpt-4o-mini"
HOUR_MS = 3_600_000
FILE_EXPIRED = "tw-expired-in-the-config-file-0123456"


class ShiftedClock:
    """The wall clock moved by ``offset_ms``: the gateway's injected clock, advanced by tests."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def now(self) -> datetime:
        return datetime.fromtimestamp(self() / 1000, timezone.utc)


@pytest.fixture(scope="module")
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread, clock: ShiftedClock) -> Iterator[RunningGateway]:
    url = f"sqlite:///{tmp_path_factory.mktemp('lifecycle')}/tollway.db"
    config = gateway_config(url, upstream.url, flush_interval="1h",  # flushed by the tests, when they say
                            governance={"virtual_keys": [
                                {"id": "vk-file", "name": "from the file", "value": "tw-from-the-config-file-0123456789"},
                                {"id": "vk-file-expired", "name": "expired in the file", "value": FILE_EXPIRED,
                                 "expires_at": "2001-01-01T00:00:00Z"}]})
    running = start_gateway(config, clock_ms=clock)
    yield running
    running.stop()


def new_key(api: httpx2.Client, **body: Any) -> dict[str, Any]:
    response = api.post(KEYS, json={"id": unique("vk"), "name": "lifecycle", **body})
    assert response.status_code == 201, response.text
    return response.json()["virtual_key"]


def chat(gateway: RunningGateway, value: str) -> Any:
    client = openai.OpenAI(base_url=gateway.v1, api_key=value, max_retries=0)
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5)


def refused(gateway: RunningGateway, value: str, status: int = 401) -> dict[str, Any]:
    with pytest.raises(openai.APIStatusError) as caught:
        chat(gateway, value)
    assert caught.value.status_code == status, caught.value.body
    body = caught.value.body
    return body.get("error", body) if isinstance(body, dict) else {}


def rotate(api: httpx2.Client, key_id: str, **body: Any) -> dict[str, Any]:
    response = api.post(f"{KEYS}/{key_id}/rotate", json=body or None)
    assert response.status_code == 200, response.text
    return response.json()


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# -- expires_at --------------------------------------------------------------------------------


def test_a_key_works_until_its_expiry_then_gets_401_virtual_key_expired(gateway, api, clock) -> None:
    expires = clock.now() + timedelta(hours=1)
    key = new_key(api, expires_at=iso(expires))
    assert key["expires_at"].startswith(iso(expires)[:19])
    assert chat(gateway, key["value"]).choices
    clock.offset_ms += HOUR_MS
    try:
        error = refused(gateway, key["value"])
        assert error["code"] == error["type"] == "virtual_key_expired"
        assert error["scope"]["id"] == key["id"] and "expired at" in error["message"]
        # Every route that takes the key says the same: the models list, the key info, the Anthropic shape.
        models = httpx2.get(gateway.v1 + "/models", headers={"Authorization": f"Bearer {key['value']}"})
        assert models.status_code == 401 and models.json()["error"]["code"] == "virtual_key_expired"
        info = httpx2.get(gateway.v1 + "/tollway/key", headers={"x-api-key": key["value"]})
        assert info.status_code == 401 and info.json()["error"]["code"] == "virtual_key_expired"
        client = anthropic.Anthropic(base_url=gateway.url, api_key=key["value"], max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as caught:
            client.messages.create(model="anthropic/claude-3-5-haiku-latest", max_tokens=5,
                                   messages=[{"role": "user", "content": "hi"}])
        assert caught.value.body["error"]["type"] == "virtual_key_expired"
    finally:
        clock.offset_ms -= HOUR_MS
    assert chat(gateway, key["value"]).choices  # the check is against the clock, not a flag set once


def test_expiry_can_be_moved_cleared_and_set_in_the_past_to_end_a_key_now(gateway, api, clock) -> None:
    key = new_key(api, expires_at=iso(clock.now() + timedelta(minutes=5)))
    updated = api.patch(f"{KEYS}/{key['id']}", json={"expires_at": iso(clock.now() - timedelta(seconds=1))})
    assert updated.status_code == 200, updated.text
    assert refused(gateway, key["value"])["code"] == "virtual_key_expired"
    cleared = api.patch(f"{KEYS}/{key['id']}", json={"expires_at": None})
    assert cleared.status_code == 200 and cleared.json()["virtual_key"]["expires_at"] is None
    assert chat(gateway, key["value"]).choices
    audit = api.get("/api/audit", params={"entity_id": key["id"]}).json()["entries"]
    assert [entry["action"] for entry in audit].count("update") == 2


def test_a_key_the_config_file_declares_expired_is_refused(gateway, api) -> None:
    assert api.get(f"{KEYS}/vk-file-expired").json()["virtual_key"]["expires_at"] == "2001-01-01T00:00:00Z"
    assert refused(gateway, FILE_EXPIRED)["code"] == "virtual_key_expired"


@pytest.mark.parametrize(("expires_at", "why"), [
    ("2020-01-01T00:00:00Z", "not in the future"),
    ("2030-01-01T00:00:00", "timezone"),  # a time without an offset is ambiguous
    ("next tuesday", "datetime"),
])
def test_a_bad_expiry_is_a_422_naming_the_field_and_writes_nothing(api, expires_at, why) -> None:
    key_id = unique("vk")
    response = api.post(KEYS, json={"id": key_id, "name": "bad", "expires_at": expires_at})
    assert response.status_code == 422, response.text
    assert "expires_at" in response.text and why in response.text
    assert api.get(f"{KEYS}/{key_id}").status_code == 404


# -- rotation ------------------------------------------------------------------------------------


def test_rotation_issues_a_new_value_once_and_the_old_one_works_for_its_grace_period(gateway, api, clock) -> None:
    key = new_key(api, budget={"max_limit": 5, "reset_duration": "1d"})
    old = key["value"]
    chat(gateway, old)
    rotated = rotate(api, key["id"], grace_period="1h")
    new = rotated["virtual_key"]["value"]
    assert new.startswith("tw-") and new != old and rotated["virtual_key"]["value_prefix"] == new[:8]
    assert "previous value works until" in rotated["message"]
    shown = api.get(f"{KEYS}/{key['id']}").json()["virtual_key"]
    assert shown["value"] is None and shown["previous_value_expires_at"] is not None  # the value is shown once
    assert chat(gateway, new).choices and chat(gateway, old).choices
    clock.offset_ms += HOUR_MS
    try:
        error = refused(gateway, old)
        assert error["code"] == "virtual_key_expired" and "replaced by a rotation" in error["message"]
        assert chat(gateway, new).choices
    finally:
        clock.offset_ms -= HOUR_MS
    # Both values are one key: one budget, charged whichever value was used.
    usage = api.get("/api/governance/usage", params={"id": key["id"], "kind": "budget"}).json()["usage"]
    assert len(usage) == 1 and usage[0]["used"] > 0
    audit = api.get("/api/audit", params={"entity_id": key["id"]}).json()["entries"]
    assert all("value_hash" not in str(entry) and new not in str(entry) for entry in audit)


def test_rotation_without_grace_ends_the_old_value_at_once(gateway, api) -> None:
    key = new_key(api)
    rotated = rotate(api, key["id"])
    assert "no longer works" in rotated["message"]
    assert rotated["virtual_key"]["previous_value_expires_at"] is None
    assert refused(gateway, key["value"])["code"] == "virtual_key_not_found"
    assert chat(gateway, rotated["virtual_key"]["value"]).choices


def test_rotating_again_during_a_grace_period_ends_the_oldest_value_now(gateway, api) -> None:
    key = new_key(api)
    first = rotate(api, key["id"], grace_period="1d")["virtual_key"]["value"]
    second = rotate(api, key["id"], grace_period="10m")["virtual_key"]["value"]
    assert refused(gateway, key["value"])["code"] == "virtual_key_not_found"  # at most two values work
    assert chat(gateway, first).choices and chat(gateway, second).choices


@pytest.mark.parametrize("grace", ["1M", "31d", "soon", "-1h"])
def test_a_bad_grace_period_is_a_422_naming_it_and_changes_nothing(gateway, api, grace) -> None:
    key = new_key(api)
    response = api.post(f"{KEYS}/{key['id']}/rotate", json={"grace_period": grace})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"].endswith("grace_period")
    assert chat(gateway, key["value"]).choices


def test_rotation_of_an_unknown_or_file_managed_key_is_refused(gateway, api) -> None:
    assert api.post(f"{KEYS}/vk-nobody/rotate", json={}).status_code == 404
    response = api.post(f"{KEYS}/vk-file/rotate", json={"grace_period": "1h"})
    assert response.status_code == 409, response.text
    assert chat(gateway, "tw-from-the-config-file-0123456789").choices
    unauthorised = httpx2.post(gateway.url + f"{KEYS}/vk-file/rotate", json={},
                               headers={"Authorization": "Bearer tw-from-the-config-file-0123456789"})
    assert unauthorised.status_code == 403  # a key cannot rotate itself (or anything) through the admin API


# -- last_used_at ----------------------------------------------------------------------------------


def stored_last_used(gateway: RunningGateway, key_id: str) -> datetime | None:
    async def read() -> datetime | None:
        async with gateway.runtime.db.session() as session:
            return await session.scalar(select(VirtualKey.last_used_at).where(VirtualKey.id == key_id))

    return gateway.call(read())


def test_last_used_at_is_written_by_the_flush_not_per_request(gateway, api) -> None:
    key, other = new_key(api), new_key(api, is_active=False)
    before = datetime.now(timezone.utc)
    chat(gateway, key["value"])
    refused(gateway, other["value"], 403)  # a refused key was not used
    assert stored_last_used(gateway, key["id"]) is None  # no database write on the request path
    updated_at = api.get(f"{KEYS}/{key['id']}").json()["virtual_key"]["updated_at"]
    gateway.call(gateway.runtime.flush_usage())
    used = stored_last_used(gateway, key["id"])
    assert used is not None and before - timedelta(seconds=1) <= used <= datetime.now(timezone.utc)
    shown = api.get(f"{KEYS}/{key['id']}").json()["virtual_key"]
    assert shown["last_used_at"] is not None and shown["updated_at"] == updated_at  # using a key changes nothing
    assert stored_last_used(gateway, other["id"]) is None
    listed = api.get(KEYS, params={"search": key["id"]}).json()["virtual_keys"]
    assert listed[0]["last_used_at"] == shown["last_used_at"]


def test_last_used_at_only_moves_forward(gateway, api) -> None:
    key = new_key(api)
    chat(gateway, key["value"])
    gateway.call(gateway.runtime.flush_usage())
    latest = stored_last_used(gateway, key["id"])
    assert latest is not None
    gateway.runtime.key_activity.note(key["id"], int(latest.timestamp() * 1000) - 60_000)  # a late, older note
    gateway.call(gateway.runtime.flush_usage())
    assert stored_last_used(gateway, key["id"]) == latest
