"""What the API changes survives a restart with the same config file: the file applies
only the fields it states to entities that already exist."""

from __future__ import annotations

import copy
from typing import Any

import openai
import pytest

from tests.api.support import MockThread, admin, gateway_config
from tests.support.gateway import start_gateway

VK = "tw-restart-0123456789abcdefgh"
KEY = "/api/governance/virtual-keys/vk-file"


def _config(database_url: str, mock_url: str) -> dict[str, Any]:
    governance = {"teams": [{"id": "file-team", "name": "From the file"}],
                  "virtual_keys": [{"id": "vk-file", "name": "file key", "value": VK, "team_id": "file-team"}]}
    return gateway_config(database_url, mock_url, governance=governance)


def test_a_key_blocked_through_the_api_stays_blocked_after_a_restart(tmp_path, upstream: MockThread) -> None:
    config = _config(f"sqlite:///{tmp_path}/tollway.db", upstream.url)
    first = start_gateway(copy.deepcopy(config))
    with admin(first) as api:
        api.put(KEY, json={"is_active": False, "budget": {"max_limit": 3, "reset_duration": "1d"}})
    first.stop()

    second = start_gateway(copy.deepcopy(config))
    try:
        with admin(second) as api:
            key = api.get(KEY).json()["virtual_key"]
        client = openai.OpenAI(base_url=second.v1, api_key=VK, max_retries=0)
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    finally:
        second.stop()
    assert key["is_active"] is False and key["budget"]["max_limit"] == 3
    assert key["team_id"] == "file-team"

    config["governance"]["virtual_keys"][0] |= {"is_active": True, "budget": None}
    third = start_gateway(copy.deepcopy(config))
    try:
        with admin(third) as api:
            key = api.get(KEY).json()["virtual_key"]
            audit = api.get("/api/audit", params={"entity_id": "vk-file"}).json()["entries"]
    finally:
        third.stop()
    assert key["is_active"] is True and key["budget"] is None  # stated in the file: the file wins
    assert [(entry["actor"], entry["action"]) for entry in audit] == [
        ("config-file", "update"), ("admin", "update"), ("config-file", "create")]
