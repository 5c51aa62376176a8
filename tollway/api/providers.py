"""`/api/providers` (also at Bifrost's `/api/governance/providers`): provider settings
and provider-level limits.

Providers themselves come from the config file (its `providers` section, read at
start); here their settings are read-only and key values are never returned (only key
ids, weights and models). Their budget and rate limit are set, changed and removed
here unless the file states either (``managed_by: config``; then they are the file's
and a change here is 409 ``managed_by_config``); resetting their usage is always allowed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from tollway.api.context import RESET_USAGE, ApiWriter, RuntimeDep, change, partial_update, read
from tollway.api.errors import not_found
from tollway.api.limits import LiveUsage, Which, iso, reset_route, update_limits
from tollway.api.ownership import refuse_config_managed
from tollway.api.responses import ProviderEnvelope, ProviderList
from tollway.api.schemas import ProviderUpdate
from tollway.config import Settings
from tollway.store.tables import Provider

KIND = "provider"
_SOURCE = ("Providers come from the config file (`providers`), read at start: their settings are shown here "
           "read-only, key values never. Their budget, rate limit and concurrency limit are managed here, unless "
           "the file states one of them (`managed_by: config`).")
_OPTIONS = (selectinload(Provider.budget), selectinload(Provider.rate_limit), selectinload(Provider.concurrency))


def provider_view(row: Provider, live: LiveUsage, settings: Settings) -> dict[str, Any]:
    stored = dict(row.settings or {})
    keys = stored.pop("keys", [])
    return {"name": row.name, "type": row.type, "base_url": row.base_url,
            "configured": row.name in settings.providers, "keys": keys, "settings": stored,
            "budget": live.budget(row.budget), "rate_limit": live.rate_limit(row.rate_limit),
            "concurrency": live.concurrency(row.concurrency),
            "managed_by": row.managed_by, "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}


def load_provider(session: Session, name: str) -> Provider:
    row = session.scalars(select(Provider).where(Provider.name == name).options(*_OPTIONS)).one_or_none()
    if row is None:
        raise not_found("provider", name)
    return row


def _envelope(message: str, view: dict[str, Any]) -> dict[str, Any]:
    return {"message": message, "provider": view}


async def list_providers(runtime: RuntimeDep) -> dict[str, Any]:
    live = LiveUsage()

    def query(session: Session) -> list[dict[str, Any]]:
        rows = session.scalars(select(Provider).order_by(Provider.name).options(*_OPTIONS))
        return [provider_view(row, live, runtime.settings) for row in rows]

    providers = await read(runtime, query)
    await live.fill(runtime.store, runtime.clock_ms())
    return {"providers": providers, "count": len(providers)}


async def get_provider(name: str, runtime: RuntimeDep) -> dict[str, Any]:
    live = LiveUsage()
    view = await read(runtime, lambda session: provider_view(load_provider(session, name), live, runtime.settings))
    await live.fill(runtime.store, runtime.clock_ms())
    return _envelope("provider found", view)


async def update_provider(name: str, body: ProviderUpdate, runtime: RuntimeDep,
                          reset_usage: Annotated[bool, RESET_USAGE] = False) -> dict[str, Any]:
    """Set, change (partially) or remove (``null``) the provider's budget, rate limit and
    concurrency limit."""
    live = LiveUsage()

    def write(writer: ApiWriter) -> Provider:
        row = load_provider(writer.session, name)
        refuse_config_managed(row, KIND, name, "given other limits")
        diff: dict[str, Any] = {}
        update_limits(writer, row, body, diff, reset_usage=reset_usage)
        writer.record(row, KIND, name, diff)
        return row

    view = await change(runtime, write, lambda row: provider_view(row, live, runtime.settings))
    await live.fill(runtime.store, runtime.clock_ms())
    return _envelope("provider limits updated", view)


def _reset(which: Which, label: str) -> Any:
    async def reset(name: str, runtime: RuntimeDep) -> dict[str, Any]:
        live = LiveUsage()
        view = await reset_route(runtime, lambda session: load_provider(session, name), which, KIND, name,
                                 lambda row: provider_view(row, live, runtime.settings))
        await live.fill(runtime.store, runtime.clock_ms())
        return _envelope(f"{label} usage reset", view)

    return reset


def _router(prefix: str, documented: bool) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["providers"], include_in_schema=documented)
    router.add_api_route("", list_providers, methods=["GET"], response_model=ProviderList,
                         summary="List providers with their limits", description=_SOURCE)
    router.add_api_route("/{name}", get_provider, methods=["GET"], response_model=ProviderEnvelope,
                         summary="Get a provider")
    partial_update(router, "/{name}", response_model=ProviderEnvelope,
                   summary="Change a provider's budget and rate limit (partial)")(update_provider)
    router.add_api_route("/{name}/budget/reset", _reset("budget", "budget"), methods=["POST"],
                         response_model=ProviderEnvelope, summary="Reset a provider's budget usage")
    router.add_api_route("/{name}/rate-limit/reset", _reset("rate_limit", "rate limit"), methods=["POST"],
                         response_model=ProviderEnvelope, summary="Reset a provider's rate-limit usage")
    return router


router = _router("/api/providers", documented=True)
bifrost_router = _router("/api/governance/providers", documented=False)
