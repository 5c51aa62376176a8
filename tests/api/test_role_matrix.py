"""The role matrix: every management route, as the app's router lists it, called with a
token of every role through the real server. A route missing from `EXPECTED` fails here,
as it is refused to every role but admin by the app: someone must decide who may call it.

Allowed means the permission check let the call through (any status but 401/403: a 404
or 422 from the route itself is fine); denied means 403 with a body naming the role and
what the route requires. Managers also call each path-scoped route on an entity outside
their scope, which must be 403.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from tests.api.admin_token_support import build_world, client_of, create_token
from tests.api.support import MockThread, admin, gateway_config, unique
from tests.support.gateway import RunningGateway, start_gateway
from tollway.api.app import create_management_app

PUBLIC = {("GET", "/api/docs"), ("GET", "/api/redoc")}
ROLES = ("admin", "viewer", "usage_reader", "team_manager", "customer_manager")
A = {"admin"}
R = {"admin", "viewer"}
U = {"admin", "viewer", "usage_reader"}
ALL = set(ROLES)
M = {"team_manager", "customer_manager"}
READ_M = R | M  # readers, and managers within their scope
WRITE_M = A | M
WRITE_CM = A | {"customer_manager"}  # a customer's manager works on its teams

_KEYS = "/api/governance/virtual-keys"
_KEY = _KEYS + "/{key_id}"
_TEAMS = "/api/governance/teams"
_TEAM = _TEAMS + "/{team_id}"
_CUSTOMERS = "/api/governance/customers"
_CUSTOMER = _CUSTOMERS + "/{customer_id}"
_MODELS = "/api/governance/model-configs"
_TAGS = "/api/governance/tags"
_LIMITS = "/api/governance/limits"

EXPECTED: dict[tuple[str, str], set[str]] = {
    ("GET", _KEYS): READ_M, ("POST", _KEYS): WRITE_M, ("POST", _KEYS + "/bulk"): WRITE_M,
    ("GET", _KEY): READ_M, ("PUT", _KEY): WRITE_M, ("PATCH", _KEY): WRITE_M, ("DELETE", _KEY): WRITE_M,
    ("POST", _KEY + "/budget/reset"): WRITE_M, ("POST", _KEY + "/rotate"): WRITE_M, ("POST", _KEY + "/rate-limit/reset"): WRITE_M,
    ("POST", _KEY + "/provider-configs/{provider}/budget/reset"): WRITE_M,
    ("POST", _KEY + "/provider-configs/{provider}/rate-limit/reset"): WRITE_M,
    ("GET", _TEAMS): READ_M, ("POST", _TEAMS): WRITE_CM,
    ("GET", _TEAM): READ_M, ("PUT", _TEAM): WRITE_CM, ("PATCH", _TEAM): WRITE_CM, ("DELETE", _TEAM): WRITE_CM,
    ("POST", _TEAM + "/budget/reset"): WRITE_CM, ("POST", _TEAM + "/rate-limit/reset"): WRITE_CM,
    ("GET", _CUSTOMERS): READ_M, ("POST", _CUSTOMERS): A,
    ("GET", _CUSTOMER): R | {"customer_manager"}, ("PUT", _CUSTOMER): A, ("PATCH", _CUSTOMER): A,
    ("DELETE", _CUSTOMER): A, ("POST", _CUSTOMER + "/budget/reset"): A, ("POST", _CUSTOMER + "/rate-limit/reset"): A,
    ("GET", _MODELS): READ_M, ("POST", _MODELS): A, ("GET", _MODELS + "/{config_id}"): READ_M,
    ("PUT", _MODELS + "/{config_id}"): A, ("PATCH", _MODELS + "/{config_id}"): A, ("DELETE", _MODELS + "/{config_id}"): A,
    ("POST", _MODELS + "/{config_id}/budget/reset"): A, ("POST", _MODELS + "/{config_id}/rate-limit/reset"): A,
    ("GET", _TAGS): READ_M, ("POST", _TAGS): A, ("GET", _TAGS + "/{tag}"): READ_M,
    ("PUT", _TAGS + "/{tag}"): A, ("PATCH", _TAGS + "/{tag}"): A, ("DELETE", _TAGS + "/{tag}"): A,
    ("POST", _TAGS + "/{tag}/budget/reset"): A, ("POST", _TAGS + "/{tag}/rate-limit/reset"): A,
    ("GET", _LIMITS): R, ("POST", _LIMITS): A, ("GET", _LIMITS + "/{rule}"): R, ("GET", _LIMITS + "/{rule}/values"): U,
    ("PUT", _LIMITS + "/{rule}"): A, ("PATCH", _LIMITS + "/{rule}"): A, ("DELETE", _LIMITS + "/{rule}"): A,
    ("POST", _LIMITS + "/{rule}/budget/reset"): A, ("POST", _LIMITS + "/{rule}/rate-limit/reset"): A,
    # Managers read spend and logs only when narrowed to their scope (test_admin_tokens).
    ("GET", "/api/governance/usage"): U, ("GET", "/api/usage/spend"): U | M,
    ("POST", "/api/usage/spend/batch"): U,  # managers: one narrowed report at a time (GET)
    ("GET", "/api/logs"): U | M, ("GET", "/api/logs/{log_id}"): U,
    ("GET", "/api/audit"): R,
    ("GET", "/api/governance/explain"): R, ("POST", "/api/governance/explain"): R,
    ("GET", "/api/alerts/webhooks"): R, ("POST", "/api/alerts/webhooks"): A,
    ("GET", "/api/alerts/webhooks/{webhook_id}"): R, ("DELETE", "/api/alerts/webhooks/{webhook_id}"): A,
    ("GET", "/api/alerts/deliveries"): R,
    ("GET", "/api/admin-tokens"): A, ("POST", "/api/admin-tokens"): A, ("GET", "/api/admin-tokens/self"): ALL,
    ("GET", "/api/admin-tokens/{token_id}"): A, ("DELETE", "/api/admin-tokens/{token_id}"): A,
    ("GET", "/api/governance/end-users"): U | M,
    ("GET", _KEY + "/end-users/{end_user}"): READ_M, ("PUT", _KEY + "/end-users/{end_user}"): WRITE_M,
    ("DELETE", _KEY + "/end-users/{end_user}"): WRITE_M,
    ("GET", _TEAM + "/end-users/{end_user}"): READ_M, ("PUT", _TEAM + "/end-users/{end_user}"): WRITE_CM,
    ("DELETE", _TEAM + "/end-users/{end_user}"): WRITE_CM,
    ("GET", _CUSTOMER + "/end-users/{end_user}"): R | {"customer_manager"},
    ("PUT", _CUSTOMER + "/end-users/{end_user}"): A, ("DELETE", _CUSTOMER + "/end-users/{end_user}"): A,
}
for _prefix in ("/api/providers", "/api/governance/providers"):
    EXPECTED |= {("GET", _prefix): READ_M, ("GET", _prefix + "/{name}"): READ_M, ("PUT", _prefix + "/{name}"): A,
                 ("PATCH", _prefix + "/{name}"): A, ("POST", _prefix + "/{name}/budget/reset"): A,
                 ("POST", _prefix + "/{name}/rate-limit/reset"): A}

# Path parameters: the id each role uses (inside a manager's scope), and the one outside.
IN_SCOPE = {
    "key_id": {"team_manager": "vk-ta", "customer_manager": "vk-ca"},
    "team_id": {"team_manager": "team-a", "customer_manager": "team-ca"},
    "customer_id": {"customer_manager": "cust-a"},
}
DEFAULT_ID = {"key_id": "vk-ta", "team_id": "team-a", "customer_id": "cust-a", "provider": "openai",
              "name": "openai", "config_id": "no-such-config", "log_id": "1", "webhook_id": "no-such-hook",
              "token_id": "no-such-token", "tag": "no-such-tag", "rule": "no-such-rule",
              "end_user": "someone"}
OUT_OF_SCOPE = {"key_id": "vk-tb", "team_id": "team-b", "customer_id": "cust-b"}
# Routes a manager calls narrowed by a query filter (in scope, and outside: 403).
SCOPED_BY_QUERY = {("GET", "/api/usage/spend"), ("GET", "/api/logs"), ("GET", "/api/governance/end-users")}


def _routes() -> list[tuple[str, str]]:
    """(method, path template) of every route of the management app."""
    app = create_management_app(SimpleNamespace(settings=SimpleNamespace(cors_origins=())))  # type: ignore[arg-type]
    found = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            found |= {(method, route.path) for method in route.methods}
    return sorted(found - PUBLIC)


ROUTES = _routes()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread) -> Iterator[RunningGateway]:
    running = start_gateway(gateway_config(f"sqlite:///{tmp_path_factory.mktemp('matrix')}/t.db", upstream.url))
    build_world(running)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def clients(gateway: RunningGateway) -> Iterator[dict[str, httpx2.Client]]:
    made = {role: client_of(gateway, create_token(gateway, role)) for role in ROLES}
    yield made
    for client in made.values():
        client.close()


def _fresh(gateway: RunningGateway, param: str, role: str) -> str:
    """A new entity for a delete to take (so the world stays whole for the next call)."""
    with admin(gateway) as api:
        if param == "key_id":
            owner = {"customer_manager": {"customer_id": "cust-a"}}.get(role, {"team_id": "team-a"})
            return str(api.post(_KEYS, json={"name": unique("doomed"), **owner}).json()["virtual_key"]["id"])
        if param == "team_id":
            return str(api.post(_TEAMS, json={"name": unique("doomed"), "customer_id": "cust-a"}).json()["team"]["id"])
        if param == "customer_id":
            return str(api.post(_CUSTOMERS, json={"name": unique("doomed")}).json()["customer"]["id"])
        if param == "token_id":
            return str(create_token(gateway, "viewer")["id"])
    return DEFAULT_ID[param]


def _path(gateway: RunningGateway, method: str, template: str, role: str, ids: dict[str, str] | None = None) -> str:
    path = template
    for param in DEFAULT_ID:
        if "{" + param + "}" not in path:
            continue
        if ids is not None:
            value = ids.get(param, DEFAULT_ID[param])
        elif method == "DELETE":
            value = _fresh(gateway, param, role)
        else:
            value = IN_SCOPE.get(param, {}).get(role, DEFAULT_ID[param])
        path = path.replace("{" + param + "}", value)
    assert "{" not in path, f"the matrix test has no value for a parameter of {template}"
    return path


def _call(client: httpx2.Client, method: str, path: str, query: dict[str, str] | None = None) -> httpx2.Response:
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return client.request(method, path, json=body, params=query)


def test_every_route_has_an_expectation() -> None:
    assert ROUTES, "no routes found: the enumeration is broken"
    missing = [route for route in ROUTES if route not in EXPECTED]
    assert not missing, f"routes without a row in the role matrix (and so without a permission rule?): {missing}"
    assert not set(EXPECTED) - set(ROUTES), "rows for routes the app no longer has"


@pytest.mark.parametrize(("method", "template"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_role_matrix(gateway: RunningGateway, clients: dict[str, httpx2.Client], method: str, template: str) -> None:
    allowed = EXPECTED.get((method, template))
    if allowed is None:
        pytest.fail(f"{method} {template} has no row in the role matrix: decide who may call it "
                    "(tollway/api/permissions.py) and add it here")
    outcomes: dict[str, Any] = {}
    for role in ROLES:
        query = {"team_id": IN_SCOPE["team_id"][role]} if role in M and (method, template) in SCOPED_BY_QUERY else None
        answer = _call(clients[role], method, _path(gateway, method, template, role), query)
        outcomes[role] = answer.status_code
        if role in allowed:
            assert answer.status_code not in (401, 403), (role, method, template, answer.text)
        else:
            _assert_denied(answer, role, method, template)
    for role in M & allowed:
        if (method, template) in SCOPED_BY_QUERY:
            for name, outside in (("team_id", "team-b"), ("virtual_key_id", "vk-tb"), ("customer_id", "cust-b")):
                _assert_denied(_call(clients[role], method, template, {name: outside}), role, method, template)
            _assert_denied(_call(clients[role], method, template), role, method, template)
        if not any("{" + param + "}" in template for param in OUT_OF_SCOPE):
            continue
        outside = _path(gateway, method, template, role, OUT_OF_SCOPE)
        _assert_denied(_call(clients[role], method, outside), role, method, outside)


def _assert_denied(answer: httpx2.Response, role: str, method: str, where: str) -> None:
    assert answer.status_code == 403, (role, method, where, answer.status_code, answer.text)
    error = answer.json()["error"]
    assert error["type"] == "forbidden"
    role_name = "manager" if role in M else role
    assert role_name in error["message"], error["message"]


def test_public_routes_need_no_token(gateway: RunningGateway) -> None:
    with admin(gateway, None) as anonymous:
        for _, path in PUBLIC:
            assert anonymous.get(path).status_code == 200
