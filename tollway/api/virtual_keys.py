"""`/api/governance/virtual-keys`: virtual keys with their limits and provider configs.

A key's value is returned once, by the create call; the store keeps only its sha256
and an 8-character prefix (``value_prefix``) to recognise it by.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from tollway.api.context import RESET_USAGE, ApiWriter, PageDep, RuntimeDep, partial_update
from tollway.api.entity_routes import EntityRoutes
from tollway.api.errors import conflict, invalid, not_found
from tollway.api.key_search import name_prefix_filter
from tollway.api.limits import LiveUsage, Which, iso, reset_route, update_limits
from tollway.api.manager_scope import scope_keys
from tollway.api.owners import check_customer, check_provider_configs, check_team
from tollway.api.responses import VirtualKeyEnvelope, VirtualKeyList
from tollway.api.schemas import VirtualKeyCreate, VirtualKeyUpdate
from tollway.config.schema import VK_PREFIX
from tollway.governance.engine import hash_key
from tollway.store.bootstrap import VALUE_PREFIX_LENGTH
from tollway.store.end_user_templates import template_view
from tollway.store.tables import VirtualKey, VKProviderConfig, new_id

router = APIRouter(prefix="/api/governance/virtual-keys", tags=["virtual keys"])

KIND = "virtual_key"


def key_view(row: VirtualKey, live: LiveUsage, value: str | None = None) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "description": row.description, "value": value,
        "value_prefix": row.value_prefix, "is_active": row.is_active, "team_id": row.team_id,
        "customer_id": row.customer_id, "allowed_models": list(row.allowed_models or []),
        "provider_configs": [
            {"id": pc.id, "provider": pc.provider, "weight": pc.weight, "allowed_models": list(pc.allowed_models or []),
             "allowed_keys": list(pc.allowed_keys or []), "budget": live.budget(pc.budget),
             "rate_limit": live.rate_limit(pc.rate_limit), "concurrency": live.concurrency(pc.concurrency)}
            for pc in sorted(row.provider_configs, key=lambda pc: pc.provider)
        ],
        "budget": live.budget(row.budget), "rate_limit": live.rate_limit(row.rate_limit),
        "concurrency": live.concurrency(row.concurrency),
        "end_user_limits": template_view(row.end_user_limits), "end_user": row.end_user,
        "managed_by": row.managed_by, "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
        "expires_at": iso(row.expires_at),
        "previous_value_expires_at": iso(row.previous_value_expires_at) if row.previous_value_hash else None,
        "last_used_at": iso(row.last_used_at),
        "allowed_tags": list(row.allowed_tags or []), "forced_tags": list(row.forced_tags or []),
    }


KEYS = EntityRoutes(
    VirtualKey, KIND, param="key_id", view=key_view, envelope_model=VirtualKeyEnvelope,
    searched=(VirtualKey.id, VirtualKey.name, VirtualKey.description),
    loaders=(selectinload(VirtualKey.provider_configs).selectinload(VKProviderConfig.budget),
             selectinload(VirtualKey.provider_configs).selectinload(VKProviderConfig.rate_limit),
             selectinload(VirtualKey.provider_configs).selectinload(VKProviderConfig.concurrency)),
)


@router.get("", response_model=VirtualKeyList, summary="List virtual keys")
async def list_keys(
    runtime: RuntimeDep, page: PageDep, team_id: str | None = None, customer_id: str | None = None,
    is_active: bool | None = None,
    search: Annotated[str | None, Query(description="Case-insensitive part of the id, name or description.")] = None,
    name_prefix: Annotated[str | None, Query(min_length=1, max_length=256,
                                             description="Keys whose name starts with this (case-sensitive; indexed).")] = None,
    after: Annotated[str | None, Query(min_length=1, max_length=256,
                                       description="Only keys whose id sorts after this one: the last id of the "
                                                   "previous page (fast at any depth, unlike offset). "
                                                   "`count` still counts every page.")] = None,
) -> dict[str, Any]:
    statement = select(VirtualKey)
    if name_prefix is not None:
        statement = statement.where(name_prefix_filter(name_prefix, runtime.db.dialect))
    if team_id is not None:
        statement = statement.where(VirtualKey.team_id == team_id)
    if customer_id is not None:
        statement = statement.where(VirtualKey.customer_id == customer_id)
    if is_active is not None:
        statement = statement.where(VirtualKey.is_active == is_active)
    cursor = VirtualKey.id > after if after is not None else None
    return await KEYS.page(runtime, page, scope_keys(statement), search, cursor=cursor)


@router.post("", status_code=201, response_model=VirtualKeyEnvelope, summary="Create a virtual key")
async def create_key(body: VirtualKeyCreate, runtime: RuntimeDep) -> dict[str, Any]:
    """The response carries the key's ``value``: the only time it is shown."""
    value = body.value or VK_PREFIX + secrets.token_urlsafe(32)
    key_id = body.id or "vk-" + new_id()

    def write(writer: ApiWriter) -> VirtualKey:
        session = writer.session
        digest = hash_key(value)
        # The id and the value checked in one query (a round trip less per key created):
        # the keys that have this id or hold this value, current or replaced.
        clashes = session.scalars(select(VirtualKey.id).where(
            (VirtualKey.id == key_id) | (VirtualKey.value_hash == digest)
            | (VirtualKey.previous_value_hash == digest))).all()
        if key_id in clashes:
            raise conflict(f"{KEYS.label} {key_id!r} already exists")
        if body.expires_at is not None and body.expires_at <= writer.now:
            raise invalid("expires_at", f"{body.expires_at.isoformat()} is not in the future: the key would never work")
        if clashes:
            raise conflict(f"value: already used by virtual key {clashes[0]!r}")
        check_team(session, body.team_id)
        check_customer(session, body.customer_id)
        check_provider_configs(writer.runtime.settings, body.provider_configs)
        return add_key(writer, body, key_id, value)

    return await KEYS.changed(runtime, "virtual key created; store its value now: it is not shown again", write,
                              lambda row, live: key_view(row, live, value))


def add_key(writer: ApiWriter, body: VirtualKeyCreate, key_id: str, value: str) -> VirtualKey:
    """Insert a checked new key with its limits and provider configs, audited."""
    digest = hash_key(value)
    writer.retention.inherit_by_value(key_id, digest)  # a deleted key's value brings its usage back
    values = {"name": body.name, "description": body.description, "is_active": body.is_active,
              "team_id": body.team_id, "customer_id": body.customer_id,
              "allowed_models": list(body.allowed_models), "value_hash": digest,
              "value_prefix": value[:VALUE_PREFIX_LENGTH], "expires_at": body.expires_at,
              "allowed_tags": list(body.allowed_tags), "forced_tags": list(body.forced_tags)}
    row, diff = KEYS.insert(writer, {"id": key_id}, values, body)
    writer.sync_provider_configs(row, body.provider_configs, diff)
    writer.record(row, KIND, key_id, diff)
    return row


KEYS.add_get(router, "get_key")


@partial_update(router, "/{key_id}", response_model=VirtualKeyEnvelope,
                  summary="Change a virtual key (partial)")
async def update_key(key_id: str, body: VirtualKeyUpdate, runtime: RuntimeDep,
                     reset_usage: Annotated[bool, RESET_USAGE] = False) -> dict[str, Any]:
    """Fields left out are kept; ``budget: null`` / ``rate_limit: null`` remove them (their usage is retained);
    ``provider_configs`` replaces the whole list. Usage is kept unless ``reset_usage``."""
    stated = body.model_fields_set

    def write(writer: ApiWriter) -> VirtualKey:
        row = KEYS.load_to_change(writer.session, key_id)
        values = {name: getattr(body, name)
                  for name in ("name", "description", "is_active", "allowed_models", "expires_at", "allowed_tags",
                               "forced_tags") if name in stated}
        if stated & {"team_id", "customer_id"}:
            team_id = body.team_id if "team_id" in stated else row.team_id
            customer_id = body.customer_id if "customer_id" in stated else row.customer_id
            if team_id and customer_id:
                field = "customer_id" if "customer_id" in stated else "team_id"
                raise invalid(field, "a virtual key belongs to a team or to a customer, not both "
                                     "(set the other one to null in the same update)")
            check_team(writer.session, team_id)
            check_customer(writer.session, customer_id)
            values |= {"team_id": team_id, "customer_id": customer_id}
        row, diff = writer.upsert(row, VirtualKey, {}, values)
        if body.provider_configs is not None:
            check_provider_configs(writer.runtime.settings, body.provider_configs)
            writer.sync_provider_configs(row, body.provider_configs, diff)
        update_limits(writer, row, body, diff, reset_usage=reset_usage)
        writer.record(row, KIND, key_id, diff)
        return row

    return await KEYS.changed(runtime, "virtual key updated", write)


KEYS.add_delete(router, "delete_key", "Deletes the key with its provider configs. Their budgets and rate limits are "
                "retained with their usage: a key created again with the same id or value takes them back.")
KEYS.add_resets(router)


def _reset_config(which: Which, label: str) -> Any:
    async def reset(key_id: str, provider: str, runtime: RuntimeDep) -> dict[str, Any]:
        def load(session: Session) -> VKProviderConfig:
            for config in KEYS.load(session, key_id).provider_configs:
                if config.provider == provider:
                    return config
            raise not_found(f"provider config of virtual key {key_id!r} for", provider)

        live = LiveUsage()
        view = await reset_route(runtime, load, which, "provider_config", f"{key_id}/{provider}",
                                 lambda config: key_view(config.virtual_key, live))
        await live.fill(runtime.store, runtime.clock_ms())
        return KEYS.envelope(f"provider config {label} usage reset", view)

    return reset


router.add_api_route("/{key_id}/provider-configs/{provider}/budget/reset", _reset_config("budget", "budget"),
                     methods=["POST"], response_model=VirtualKeyEnvelope,
                     summary="Reset the budget usage of a key's provider config")
router.add_api_route("/{key_id}/provider-configs/{provider}/rate-limit/reset",
                     _reset_config("rate_limit", "rate limit"), methods=["POST"], response_model=VirtualKeyEnvelope,
                     summary="Reset the rate-limit usage of a key's provider config")
