"""Admin auth of the management API: the admin token only, virtual keys refused, the
docs public, and the whole API off (503) without an admin token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.support import ADMIN_TOKEN, MockThread, admin, gateway_config
from tests.support.gateway import RunningGateway, start_gateway

VK = "tw-auth-test-0123456789abcdefgh"


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread) -> Iterator[dict[str, RunningGateway]]:
    root: Path = tmp_path_factory.mktemp("auth")
    governance = {"virtual_keys": [{"id": "vk-auth", "name": "auth", "value": VK}]}
    secured = start_gateway(gateway_config(f"sqlite:///{root}/a.db", upstream.url, governance=governance))
    open_ = start_gateway(gateway_config(f"sqlite:///{root}/b.db", upstream.url, admin_token=None))
    yield {"secured": secured, "unset": open_}
    secured.stop()
    open_.stop()


@pytest.mark.parametrize("path", ["/api/governance/virtual-keys", "/api/logs", "/api/governance/usage", "/api/audit"])
def test_every_route_needs_the_admin_token(gateways: dict[str, RunningGateway], path: str) -> None:
    gateway = gateways["secured"]
    with admin(gateway, None) as anonymous, admin(gateway, "wrong-token-0123456789") as wrong, \
            admin(gateway, VK) as virtual_key, admin(gateway) as good:
        missing = anonymous.get(path)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer <admin_token>" in missing.json()["error"]["message"]
        assert wrong.get(path).json()["error"] == {"type": "unauthorized", "message": "invalid admin token",
                                                   "field": None}
        refused = virtual_key.get(path)
        assert refused.status_code == 403
        assert refused.json()["error"]["message"].startswith("virtual keys cannot use the management API")
        assert good.get(path).status_code == 200


def test_other_schemes_and_writes_are_refused_too(gateways: dict[str, RunningGateway]) -> None:
    with admin(gateways["secured"], None) as client:
        basic = client.get("/api/governance/teams", headers={"Authorization": f"Basic {ADMIN_TOKEN}"})
        write = client.post("/api/governance/teams", json={"id": "x", "name": "x"})
    assert basic.status_code == write.status_code == 401
    with admin(gateways["secured"]) as client:
        assert client.get("/api/governance/teams/x").status_code == 404  # nothing was written


def test_openapi_and_docs_are_public(gateways: dict[str, RunningGateway]) -> None:
    with admin(gateways["secured"], None) as client:
        document = client.get("/api/openapi.json")
        docs = client.get("/api/docs")
    assert document.status_code == 200 and docs.status_code == 200
    paths = document.json()["paths"]
    assert {"/api/governance/virtual-keys", "/api/governance/virtual-keys/{key_id}", "/api/governance/teams",
            "/api/governance/customers", "/api/governance/model-configs", "/api/providers", "/api/providers/{name}",
            "/api/governance/usage", "/api/usage/spend", "/api/logs", "/api/audit",
            "/api/governance/explain"} <= set(paths)
    assert {"put", "patch", "get", "delete"} <= set(paths["/api/governance/virtual-keys/{key_id}"])
    assert "HTTPBearer" in document.json()["components"]["securitySchemes"]
    assert "/api/openapi.json" in docs.text


def test_without_an_admin_token_the_api_is_disabled(gateways: dict[str, RunningGateway]) -> None:
    with admin(gateways["unset"], "anything-at-all-0123456") as client:
        answer = client.get("/api/governance/virtual-keys")
        document = client.get("/api/openapi.json")
    assert answer.status_code == 503
    assert answer.json()["error"]["message"] == "management API disabled: set admin_token"
    assert document.status_code == 200
