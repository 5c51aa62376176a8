"""Scoped admin tokens through the real server: made, listed (never their values),
revoked; stored hashed; managers kept to their scope and caps however they try; every
change audited with the token that made it; the CLI."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.api.admin_token_support import build_world, client_of, create_token
from tests.api.support import ADMIN_TOKEN, MockThread, admin, gateway_config, unique
from tests.support.gateway import RunningGateway, start_gateway
from tollway.api import permissions
from tollway.cli import app as cli
from tollway.store.tables import AdminToken

KEYS = "/api/governance/virtual-keys"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread) -> Iterator[RunningGateway]:
    running = start_gateway(gateway_config(f"sqlite:///{tmp_path_factory.mktemp('tokens')}/t.db", upstream.url))
    build_world(running)
    yield running
    running.stop()


@pytest.fixture
def as_role(gateway: RunningGateway) -> Iterator[Any]:
    opened: list[httpx2.Client] = []

    def open_(who: str) -> httpx2.Client:
        opened.append(client_of(gateway, create_token(gateway, who)))
        return opened[-1]

    yield open_
    for client in opened:
        client.close()


def _rows(gateway: RunningGateway) -> list[AdminToken]:
    async def load() -> list[AdminToken]:
        async with gateway.runtime.db.session() as session:
            return list((await session.scalars(select(AdminToken))).all())

    return gateway.call(load())


# -- lifecycle ----------------------------------------------------------------------------------

def test_a_token_is_shown_once_and_stored_as_its_hash_only(gateway: RunningGateway, api: httpx2.Client) -> None:
    created = create_token(gateway, "viewer", name="dashboards")
    value = created["value"]
    assert value.startswith("twa-") and len(value) > 40
    assert created["role"] == "viewer" and created["scope"] is None and created["created_by"] == "bootstrap"
    listed = api.get("/api/admin-tokens").json()["admin_tokens"]
    shown = api.get(f"/api/admin-tokens/{created['id']}").json()["admin_token"]
    assert value not in json.dumps(listed) and shown["value"] is None and shown["value_prefix"] == value[:12]
    row = next(row for row in _rows(gateway) if row.id == created["id"])
    assert row.value_hash == hashlib.sha256(value.encode()).hexdigest()
    assert value not in json.dumps({col.key: str(getattr(row, col.key)) for col in AdminToken.__table__.columns})


def test_a_revoked_token_gets_401_at_once_and_stays_listed(gateway: RunningGateway, api: httpx2.Client) -> None:
    created = create_token(gateway, "viewer")
    with client_of(gateway, created) as viewer:
        assert viewer.get("/api/governance/teams").status_code == 200
        assert api.delete(f"/api/admin-tokens/{created['id']}").status_code == 200
        refused = viewer.get("/api/governance/teams")
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    assert api.delete(f"/api/admin-tokens/{created['id']}").status_code == 409
    revoked = api.get("/api/admin-tokens", params={"revoked": "true"}).json()["admin_tokens"]
    assert created["id"] in {token["id"] for token in revoked}
    assert created["id"] not in {t["id"] for t in api.get("/api/admin-tokens", params={"revoked": "false"})
                                 .json()["admin_tokens"]}


def test_an_unknown_token_is_401_and_the_bootstrap_token_stays_full_admin(gateway: RunningGateway) -> None:
    with admin(gateway, "twa-not-a-real-token-0123456789") as stranger:
        answer = stranger.get("/api/governance/teams")
    assert answer.status_code == 401 and answer.json()["error"]["message"] == "invalid admin token"
    with admin(gateway) as bootstrap:
        me = bootstrap.get("/api/admin-tokens/self").json()["admin_token"]
        assert me["id"] == "bootstrap" and me["role"] == "admin"
        assert bootstrap.post("/api/admin-tokens", json={"name": unique("x"), "role": "admin"}).status_code == 201


def test_last_used_at_is_kept(gateway: RunningGateway, api: httpx2.Client) -> None:
    created = create_token(gateway, "usage_reader")
    assert created["last_used_at"] is None
    with client_of(gateway, created) as reader:
        assert reader.get("/api/governance/usage").status_code == 200
    assert api.get(f"/api/admin-tokens/{created['id']}").json()["admin_token"]["last_used_at"] is not None


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "x", "role": "root"}, "role"),
    ({"name": "", "role": "viewer"}, "name"),
    ({"name": "x", "role": "manager"}, "scope"),
    ({"name": "x", "role": "viewer", "scope": {"team_id": "team-a"}}, "scope"),
    ({"name": "x", "role": "manager", "scope": {"team_id": "team-a", "customer_id": "cust-a"}}, "scope"),
    ({"name": "x", "role": "manager", "scope": {"team_id": "no-such-team"}}, "scope.team_id"),
    ({"name": "x", "role": "manager", "scope": {"customer_id": "no-such"}}, "scope.customer_id"),
    ({"name": "x", "role": "viewer", "value": "twa-chosen"}, "value"),
])
def test_bad_token_bodies_are_422_naming_the_field_and_write_nothing(gateway: RunningGateway, api: httpx2.Client,
                                                                     body: dict[str, Any], field: str) -> None:
    before = len(_rows(gateway))
    answer = api.post("/api/admin-tokens", json=body)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert field in {error.get("field")} | {d.get("field") for d in error.get("details") or []}, error
    assert len(_rows(gateway)) == before


# -- no escalation ------------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["team_manager", "customer_manager", "viewer", "usage_reader"])
def test_only_admins_make_or_revoke_tokens(gateway: RunningGateway, as_role: Any, who: str) -> None:
    client = as_role(who)
    before = len(_rows(gateway))
    for role in ("admin", "manager", "viewer"):
        body = {"name": "escalate", "role": role, **({"scope": {"team_id": "team-b"}} if role == "manager" else {})}
        answer = client.post("/api/admin-tokens", json=body)
        assert answer.status_code == 403 and "requires admin" in answer.json()["error"]["message"]
    assert client.delete("/api/admin-tokens/bootstrap").status_code == 403
    assert len(_rows(gateway)) == before


def test_a_team_manager_works_on_its_keys_within_the_team_budget(as_role: Any, api: httpx2.Client) -> None:
    manager = as_role("team_manager")
    inside = manager.post(KEYS, json={"name": unique("k"), "team_id": "team-a",
                                      "budget": {"max_limit": 50, "reset_duration": "1d"}})
    assert inside.status_code == 201, inside.text
    key_id = inside.json()["virtual_key"]["id"]
    above = manager.put(f"{KEYS}/{key_id}", json={"budget": {"max_limit": 50.01}})
    assert above.status_code == 403 and "team 'team-a': 50" in above.json()["error"]["message"]
    hidden_in_config = manager.put(f"{KEYS}/{key_id}", json={"provider_configs": [
        {"provider": "openai", "budget": {"max_limit": 500, "reset_duration": "1d"}}]})
    assert hidden_in_config.status_code == 403 and "provider_configs[0]" in hidden_in_config.json()["error"]["message"]
    assert api.get(f"{KEYS}/{key_id}").json()["virtual_key"]["budget"]["max_limit"] == 50
    assert manager.put(f"{KEYS}/{key_id}", json={"budget": {"max_limit": 10}}).status_code == 200
    assert manager.delete(f"{KEYS}/{key_id}").status_code == 200


@pytest.mark.parametrize("body", [
    {"team_id": "team-b"}, {"customer_id": "cust-a", "team_id": None}, {"team_id": None},
])
def test_a_manager_cannot_move_a_key_out(as_role: Any, api: httpx2.Client, body: dict[str, Any]) -> None:
    manager = as_role("team_manager")
    answer = manager.patch(f"{KEYS}/vk-ta", json=body)
    assert answer.status_code == 403, answer.text
    assert api.get(f"{KEYS}/vk-ta").json()["virtual_key"]["team_id"] == "team-a"


@pytest.mark.parametrize("owner", [{"team_id": "team-b"}, {"customer_id": "cust-a"}, {}, {"team_id": "team-ca"}])
def test_a_team_manager_creates_no_key_outside_its_team(as_role: Any, api: httpx2.Client,
                                                         owner: dict[str, Any]) -> None:
    name = unique("outside")
    answer = as_role("team_manager").post(KEYS, json={"name": name, **owner})
    assert answer.status_code == 403 and "own scope" in answer.json()["error"]["message"]
    assert api.get(KEYS, params={"search": name}).json()["count"] == 0


def test_a_bulk_create_with_one_key_outside_writes_none(as_role: Any, api: httpx2.Client) -> None:
    tag = unique("bulk")
    keys = [{"name": f"{tag}-1", "team_id": "team-a"}, {"name": f"{tag}-2", "team_id": "team-b"}]
    answer = as_role("team_manager").post(f"{KEYS}/bulk", json={"virtual_keys": keys})
    assert answer.status_code == 403 and "virtual_keys[1]" in answer.json()["error"]["message"]
    assert api.get(KEYS, params={"search": tag}).json()["count"] == 0


def test_managers_see_only_their_scope_in_lists(as_role: Any) -> None:
    team, customer = as_role("team_manager"), as_role("customer_manager")
    team_keys = {k["id"] for k in team.get(KEYS, params={"limit": 1000}).json()["virtual_keys"]}
    customer_keys = {k["id"] for k in customer.get(KEYS, params={"limit": 1000}).json()["virtual_keys"]}
    assert "vk-ta" in team_keys and not team_keys & {"vk-tb", "vk-ca", "vk-c", "vk-cb"}
    assert {"vk-ca", "vk-c"} <= customer_keys and not customer_keys & {"vk-ta", "vk-tb", "vk-cb"}
    # A filter naming another owner does not widen the scope.
    assert team.get(KEYS, params={"team_id": "team-b"}).json()["count"] == 0
    assert {t["id"] for t in team.get("/api/governance/teams").json()["teams"]} == {"team-a"}
    assert {t["id"] for t in customer.get("/api/governance/teams").json()["teams"]} >= {"team-ca"}
    assert "team-a" not in {t["id"] for t in customer.get("/api/governance/teams").json()["teams"]}
    assert team.get("/api/governance/customers").json()["count"] == 0
    assert [c["id"] for c in customer.get("/api/governance/customers").json()["customers"]] == ["cust-a"]


def test_a_manager_cannot_change_or_reset_its_own_caps(as_role: Any) -> None:
    team, customer = as_role("team_manager"), as_role("customer_manager")
    assert team.put("/api/governance/teams/team-a", json={"budget": {"max_limit": 10**6}}).status_code == 403
    assert team.post("/api/governance/teams/team-a/budget/reset").status_code == 403
    assert customer.put("/api/governance/customers/cust-a", json={"budget": {"max_limit": 10**6}}).status_code == 403
    assert customer.post("/api/governance/customers/cust-a/budget/reset").status_code == 403


def test_a_customer_manager_runs_its_teams_within_the_customer_caps(as_role: Any, api: httpx2.Client) -> None:
    manager = as_role("customer_manager")
    over = manager.post("/api/governance/teams", json={"name": unique("t"), "customer_id": "cust-a",
                                                        "budget": {"max_limit": 101, "reset_duration": "1d"}})
    assert over.status_code == 403 and "customer 'cust-a': 100" in over.json()["error"]["message"]
    elsewhere = manager.post("/api/governance/teams", json={"name": unique("t"), "customer_id": "cust-b"})
    assert elsewhere.status_code == 403
    made = manager.post("/api/governance/teams", json={"name": unique("t"), "customer_id": "cust-a",
                                                        "rate_limit": {"request_max_limit": 1000,
                                                                       "request_reset_duration": "1h"}})
    assert made.status_code == 201, made.text
    team_id = made.json()["team"]["id"]
    assert manager.put(f"/api/governance/teams/{team_id}", json={"customer_id": "cust-b"}).status_code == 403
    assert manager.put(f"/api/governance/teams/{team_id}", json={"rate_limit": {"request_max_limit": 1001}}) \
        .status_code == 403
    assert api.get(f"/api/governance/teams/{team_id}").json()["team"]["customer_id"] == "cust-a"
    assert manager.delete(f"/api/governance/teams/{team_id}").status_code == 200


def test_forbidden_names_the_role_and_what_is_required(as_role: Any) -> None:
    answer = as_role("viewer").post("/api/governance/teams", json={"name": "x"})
    error = answer.json()["error"]
    assert answer.status_code == 403 and error["type"] == "forbidden"
    assert "role viewer" in error["message"] and "requires admin, or a manager" in error["message"]


# -- audit and CLI ------------------------------------------------------------------------------

def test_the_audit_log_names_the_token_never_its_value(gateway: RunningGateway, api: httpx2.Client) -> None:
    token = create_token(gateway, "team_manager", name="ci-pipeline")
    with client_of(gateway, token) as manager:
        key_id = manager.post(KEYS, json={"name": unique("audited"), "team_id": "team-a"}).json()["virtual_key"]["id"]
    entries = api.get("/api/audit", params={"entity_id": key_id}).json()["entries"]
    assert [(e["action"], e["token_id"], e["token_name"]) for e in entries] == [("create", token["id"], "ci-pipeline")]
    by_token = api.get("/api/audit", params={"token_id": token["id"]}).json()["entries"]
    assert {e["entity_id"] for e in by_token} == {key_id}
    bootstrap = api.get("/api/audit", params={"token_id": "bootstrap", "entity_type": "admin_token"}).json()
    assert bootstrap["count"] >= 1 and token["value"] not in json.dumps(bootstrap)


def test_the_cli_creates_lists_and_revokes_tokens(gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLWAY_URL", gateway.url)
    monkeypatch.setenv("TOLLWAY_ADMIN_TOKEN", ADMIN_TOKEN)
    runner = CliRunner()
    made = runner.invoke(cli, ["admin-tokens", "create", "--name", "from-cli", "--role", "manager",
                               "--team", "team-a", "--json"])
    assert made.exit_code == 0, made.output
    created = json.loads(made.output)["admin_token"]
    assert created["value"].startswith("twa-") and created["scope"] == {"type": "team", "id": "team-a"}
    listed = runner.invoke(cli, ["admin-tokens", "list"])
    assert created["id"] in listed.output and created["value"] not in listed.output
    missing_scope = runner.invoke(cli, ["admin-tokens", "create", "--name", "x", "--role", "manager"])
    assert missing_scope.exit_code == 1 and "--team/--customer" in missing_scope.output
    assert runner.invoke(cli, ["admin-tokens", "revoke", created["id"]]).exit_code == 0
    with admin(gateway, created["value"]) as revoked:
        assert revoked.get(KEYS).status_code == 401


def test_a_route_without_a_rule_is_admin_only(as_role: Any, api: httpx2.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(permissions.RULES, ("GET", "/api/audit"))  # as a route added without deciding who may call it
    answer = as_role("viewer").get("/api/audit")
    assert answer.status_code == 403 and "has no permission rule" in answer.json()["error"]["message"]
    assert api.get("/api/audit").status_code == 200
