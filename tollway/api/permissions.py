"""Which role may call which management route: one rule per (method, path template).

Roles: ``admin`` may do everything; ``viewer`` reads everything but admin tokens;
``usage_reader`` reads usage, spend and the request log; ``manager`` works on the keys
of its team or customer (and a customer's teams) within the caps an admin set
(`tollway.api.manager_checks`), reads their spend and request log, and reads providers
and model configs to build keys.

A route with no rule here is refused to every role but ``admin`` (403 naming the
missing rule), and the role-matrix test fails on it: a new route is closed until
someone decides who may call it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import Request
from starlette.routing import BaseRoute

from tollway.api import manager_checks as checks
from tollway.api.context import ManagedRuntime, now_of
from tollway.api.errors import ApiError
from tollway.api.manager_checks import Call, Check
from tollway.api.principal import ADMIN, MANAGER, USAGE_READER, VIEWER, Principal, authenticate


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may call a route besides an admin; ``manager`` None: no manager, a check: a
    manager within that check, `ANY_SCOPE`: any manager."""

    roles: frozenset[str]
    manager: Check | None = None
    requires: str = "admin"  # said in the 403 body

    def admits(self, role: str) -> bool:
        return role == ADMIN or role in self.roles or (role == MANAGER and self.manager is not None)


def _unscoped(_session: object, _call: Call) -> None:
    """A manager may call the route whatever its scope (the route itself narrows lists)."""


ANY_SCOPE: Check = _unscoped
ADMIN_ONLY = Rule(frozenset())
READ = Rule(frozenset({VIEWER}), requires="admin or viewer")
USAGE = Rule(frozenset({VIEWER, USAGE_READER}), requires="admin, viewer or usage_reader")
EVERYONE = Rule(frozenset({VIEWER, USAGE_READER}), ANY_SCOPE, requires="any admin token")


def _read(check: Check, what: str) -> Rule:
    return Rule(frozenset({VIEWER}), check, requires=f"admin, viewer, or a manager whose scope holds {what}")


def _write(check: Check, what: str) -> Rule:
    return Rule(frozenset(), check, requires=f"admin, or a manager whose scope holds {what}")


_KEYS = "/api/governance/virtual-keys"
_KEY = _KEYS + "/{key_id}"
_TEAM = "/api/governance/teams/{team_id}"
_CUSTOMER = "/api/governance/customers/{customer_id}"
_END_USERS = "/api/governance/end-users"
_END_USER = "/end-users/{end_user}"  # after an owner's path
_USAGE_M = Rule(frozenset({VIEWER, USAGE_READER}), checks.usage_narrowed,
                requires="admin, viewer, usage_reader, or a manager filtering by a key, team or customer of its scope")
_KEY_WRITE = _write(checks.key_path, "the key")
_TEAM_WRITE = _write(checks.team_of_customer, "the team (a customer's manager)")

RULES: dict[tuple[str, str], Rule] = {
    ("GET", _KEYS): _read(ANY_SCOPE, "the keys (the list shows only those)"),
    ("POST", _KEYS): _write(checks.key_create, "the new key's owner"),
    ("POST", _KEYS + "/bulk"): _write(checks.key_bulk_create, "every new key's owner"),
    ("GET", _KEY): _read(checks.key_path, "the key"),
    ("PUT", _KEY): _write(checks.key_update, "the key"),
    ("PATCH", _KEY): _write(checks.key_update, "the key"),
    ("DELETE", _KEY): _KEY_WRITE,
    ("POST", _KEY + "/budget/reset"): _KEY_WRITE,
    ("POST", _KEY + "/rotate"): _KEY_WRITE,
    ("POST", _KEY + "/rate-limit/reset"): _KEY_WRITE,
    ("POST", _KEY + "/provider-configs/{provider}/budget/reset"): _KEY_WRITE,
    ("POST", _KEY + "/provider-configs/{provider}/rate-limit/reset"): _KEY_WRITE,
    ("GET", "/api/governance/teams"): _read(ANY_SCOPE, "the teams (the list shows only those)"),
    ("POST", "/api/governance/teams"): _write(checks.team_create, "the new team's customer"),
    ("GET", _TEAM): _read(checks.team_read, "the team"),
    ("PUT", _TEAM): _write(checks.team_update, "the team (a customer's manager)"),
    ("PATCH", _TEAM): _write(checks.team_update, "the team (a customer's manager)"),
    ("DELETE", _TEAM): _TEAM_WRITE,
    ("POST", _TEAM + "/budget/reset"): _TEAM_WRITE,
    ("POST", _TEAM + "/rate-limit/reset"): _TEAM_WRITE,
    ("GET", "/api/governance/customers"): _read(ANY_SCOPE, "the customer (the list shows only it)"),
    ("POST", "/api/governance/customers"): ADMIN_ONLY,
    ("GET", _CUSTOMER): _read(checks.customer_read, "the customer"),
    ("PUT", _CUSTOMER): ADMIN_ONLY,
    ("PATCH", _CUSTOMER): ADMIN_ONLY,
    ("DELETE", _CUSTOMER): ADMIN_ONLY,
    ("POST", _CUSTOMER + "/budget/reset"): ADMIN_ONLY,
    ("POST", _CUSTOMER + "/rate-limit/reset"): ADMIN_ONLY,
    ("GET", "/api/governance/usage"): USAGE,
    ("GET", "/api/usage/spend"): _USAGE_M,
    ("POST", "/api/usage/spend/batch"): USAGE,  # a read; managers narrow each report: GET, one at a time
    ("GET", "/api/logs"): _USAGE_M,
    ("GET", "/api/logs/{log_id}"): USAGE,
    ("GET", "/api/audit"): READ,
    ("GET", "/api/governance/explain"): READ,
    ("POST", "/api/governance/explain"): READ,  # a question, not a change
    ("GET", "/api/alerts/webhooks"): READ,
    ("POST", "/api/alerts/webhooks"): ADMIN_ONLY,
    ("GET", "/api/alerts/webhooks/{webhook_id}"): READ,
    ("DELETE", "/api/alerts/webhooks/{webhook_id}"): ADMIN_ONLY,
    ("GET", "/api/alerts/deliveries"): READ,
    ("GET", "/api/admin-tokens"): ADMIN_ONLY,
    ("POST", "/api/admin-tokens"): ADMIN_ONLY,
    ("GET", "/api/admin-tokens/self"): EVERYONE,
    ("GET", "/api/admin-tokens/{token_id}"): ADMIN_ONLY,
    ("DELETE", "/api/admin-tokens/{token_id}"): ADMIN_ONLY,
    # End users: listed like spend (a manager narrowing to its key, team or customer); one end
    # user under an owner's template read and changed like that owner.
    ("GET", _END_USERS): _USAGE_M,
    ("GET", _KEY + _END_USER): _read(checks.key_path, "the key"),
    ("PUT", _KEY + _END_USER): _KEY_WRITE,
    ("DELETE", _KEY + _END_USER): _KEY_WRITE,
    ("GET", _TEAM + _END_USER): _read(checks.team_read, "the team"),
    ("PUT", _TEAM + _END_USER): _TEAM_WRITE,
    ("DELETE", _TEAM + _END_USER): _TEAM_WRITE,
    ("GET", _CUSTOMER + _END_USER): _read(checks.customer_read, "the customer"),
    ("PUT", _CUSTOMER + _END_USER): ADMIN_ONLY,
    ("DELETE", _CUSTOMER + _END_USER): ADMIN_ONLY,
}
for _prefix in ("/api/providers", "/api/governance/providers"):
    RULES[("GET", _prefix)] = _read(ANY_SCOPE, "anything (providers are read to build keys)")
    RULES[("GET", _prefix + "/{name}")] = _read(ANY_SCOPE, "anything (providers are read to build keys)")
    for _method, _suffix in (("PUT", "/{name}"), ("PATCH", "/{name}"), ("POST", "/{name}/budget/reset"),
                             ("POST", "/{name}/rate-limit/reset")):
        RULES[(_method, _prefix + _suffix)] = ADMIN_ONLY
_TAGS = "/api/governance/tags"
RULES[("GET", _TAGS)] = _read(ANY_SCOPE, "anything (tags are shared by every key)")
RULES[("GET", _TAGS + "/{tag}")] = _read(ANY_SCOPE, "anything (tags are shared by every key)")
for _method, _suffix in (("POST", ""), ("PUT", "/{tag}"), ("PATCH", "/{tag}"), ("DELETE", "/{tag}"),
                         ("POST", "/{tag}/budget/reset"), ("POST", "/{tag}/rate-limit/reset")):
    RULES[(_method, _TAGS + _suffix)] = ADMIN_ONLY
_LIMITS = "/api/governance/limits"  # limit rules select across keys, teams and customers: an admin's
RULES[("GET", _LIMITS)] = READ
RULES[("GET", _LIMITS + "/{rule}")] = READ
RULES[("GET", _LIMITS + "/{rule}/values")] = USAGE
for _method, _suffix in (("POST", ""), ("PUT", "/{rule}"), ("PATCH", "/{rule}"), ("DELETE", "/{rule}"),
                         ("POST", "/{rule}/budget/reset"), ("POST", "/{rule}/rate-limit/reset")):
    RULES[(_method, _LIMITS + _suffix)] = ADMIN_ONLY
_MODELS = "/api/governance/model-configs"
RULES[("GET", _MODELS)] = _read(ANY_SCOPE, "anything (model configs are read to build keys)")
RULES[("GET", _MODELS + "/{config_id}")] = _read(ANY_SCOPE, "anything (model configs are read to build keys)")
for _method, _suffix in (("POST", ""), ("PUT", "/{config_id}"), ("PATCH", "/{config_id}"), ("DELETE", "/{config_id}"),
                         ("POST", "/{config_id}/budget/reset"), ("POST", "/{config_id}/rate-limit/reset")):
    RULES[(_method, _MODELS + _suffix)] = ADMIN_ONLY


def rule_for(method: str, path: str) -> Rule | None:
    """The rule of a route (its path template, e.g. ``/api/governance/teams/{team_id}``)."""
    return RULES.get((method, path))


async def require_permission(request: Request) -> None:
    """The dependency of every guarded route: who is calling, and may it call this route."""
    runtime: ManagedRuntime = request.app.state.runtime
    principal = await authenticate(request, runtime.settings.admin_token, runtime.db, now_of(runtime))
    if principal.is_admin:
        return
    route: BaseRoute | None = request.scope.get("route")
    method, path = request.method, getattr(route, "path", request.url.path)
    rule = rule_for(method, path)
    if rule is None:
        raise _denied(principal, method, path, "admin (this route has no permission rule yet)")
    if not rule.admits(principal.role):
        raise _denied(principal, method, path, rule.requires)
    if principal.role == MANAGER and rule.manager is not None and rule.manager is not ANY_SCOPE:
        call = Call(principal, dict(request.path_params), await _json_body(request), dict(request.query_params))
        async with runtime.db.session() as session:
            await session.run_sync(lambda sync: rule.manager(sync, call))  # type: ignore[misc]


def _denied(principal: Principal, method: str, path: str, requires: str) -> ApiError:
    return ApiError(403, f"token {principal.token_id!r} has role {principal.describe()}; {method} {path} "
                         f"requires {requires}", kind="forbidden")


async def _json_body(request: Request) -> object:
    body = await request.body()
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None  # the route answers 400 itself
