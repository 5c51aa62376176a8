"""The management API application: FastAPI under `/api`, off the hot path.

`create_management_app(runtime)` builds it over the running gateway's parts; the gateway
hands it every request whose path starts with `/api`. Every route needs
``Authorization: Bearer <token>``, the admin token or a scoped one, and a role its rule
admits (`tollway.api.permissions`); the OpenAPI document (`/api/openapi.json`) and
the docs pages (`/api/docs`, `/api/redoc`, their assets under `/api/docs/assets`) are public.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPBearer

from tollway.api import (
    admin_tokens,
    alerts,
    audit,
    customers,
    end_users,
    explain,
    key_rotation,
    limit_rule_values,
    limit_rules,
    logs,
    model_configs,
    providers,
    spend,
    tags,
    teams,
    usage,
    virtual_keys,
    virtual_keys_bulk,
)
from tollway.api.context import ManagedRuntime
from tollway.api.docs_pages import install_docs_pages
from tollway.api.errors import install_error_handlers
from tollway.api.permissions import require_permission
from tollway.api.responses import ErrorBody

DESCRIPTION = """\
Create, change and inspect Tollway's governance while it runs: virtual keys, teams,
customers, model configs and provider limits, each with its budget and rate limit;
live usage, spend over time, the request log, the audit log, and an explain endpoint
that says what a request would get now. Changes apply to the next request.

**Auth**: send `Authorization: Bearer <admin_token>` (the `admin_token` setting, e.g.
`admin_token: env.TOLLWAY_ADMIN_TOKEN`) or a scoped admin token (`twa-…`, made with
`POST /api/admin-tokens`: roles `admin`, `manager` of a team or customer, `viewer`,
`usage_reader`). Without `admin_token` the API answers 503. A role that may not call a
route gets 403 saying what the route requires; an unknown or revoked token gets 401.

**Coming from Bifrost**: the paths and envelopes are Bifrost's (`/api/governance/...`,
`{"message", "virtual_key"}`, `{"virtual_keys", "count"}`; `PUT` or `PATCH` for partial
updates). Providers come from the config file; only their limits change here.

**Errors**: `{"error": {"type", "message", "field", "details"}}`; 400 malformed request,
401/403 auth, 404 unknown entity in the path, 409 duplicate or a delete that would orphan,
422 invalid field or unknown referenced id, 503 disabled or database down.
"""

_ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 422, 503)}
_bearer = HTTPBearer(auto_error=False, description="The admin token (settings: admin_token).")


def create_management_app(runtime: ManagedRuntime) -> FastAPI:
    """The `/api` application over ``runtime`` (whose store and enforcer must exist)."""
    app = FastAPI(
        title="Tollway management API",
        version="1",
        description=DESCRIPTION,
        openapi_url="/api/openapi.json",
        docs_url=None,  # served by install_docs_pages, with assets from the gateway, not a CDN
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_docs_pages(app)
    install_error_handlers(app)
    guarded = [Depends(require_permission), Depends(_bearer)]  # _bearer: the OpenAPI security scheme
    for module in (virtual_keys_bulk, key_rotation, virtual_keys, teams, customers, tags, limit_rules, limit_rule_values,
                   model_configs, usage, spend, logs, audit, explain, alerts, admin_tokens, end_users):
        app.include_router(module.router, dependencies=guarded, responses=_ERRORS)
    app.include_router(end_users.owner_router, dependencies=guarded, responses=_ERRORS)
    app.include_router(providers.router, dependencies=guarded, responses=_ERRORS)
    app.include_router(providers.bifrost_router, dependencies=guarded, responses=_ERRORS)
    if runtime.settings.cors_origins:
        # Off unless configured: browsers on other origins get no access. Bearer tokens, no
        # cookies, so credentials stay off; preflights are answered before the token check.
        app.add_middleware(CORSMiddleware, allow_origins=list(runtime.settings.cors_origins),
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    return app
