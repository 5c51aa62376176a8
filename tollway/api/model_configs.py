"""`/api/governance/model-configs`: limits for a model on one provider, or on any
provider (``provider: null``). (model_name, provider) is unique. Counters follow the
config's id, so renaming a model config keeps its usage."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from tollway.api.context import (
    RESET_USAGE,
    ApiWriter,
    PageDep,
    RuntimeDep,
    change,
    paginate,
    partial_update,
    read,
    search_filter,
)
from tollway.api.errors import conflict, not_found
from tollway.api.limits import LiveUsage, Which, iso, reset_route, update_limits
from tollway.api.owners import check_provider
from tollway.api.responses import Message, ModelConfigEnvelope, ModelConfigList
from tollway.api.schemas import ModelConfigCreate, ModelConfigUpdate
from tollway.store.tables import ModelConfig, new_id

router = APIRouter(prefix="/api/governance/model-configs", tags=["model configs"])

KIND = "model_config"
_OPTIONS = (selectinload(ModelConfig.budget), selectinload(ModelConfig.rate_limit))


def model_config_view(row: ModelConfig, live: LiveUsage) -> dict[str, Any]:
    return {"id": row.id, "model_name": row.model_name, "provider": row.provider,
            "budget": live.budget(row.budget), "rate_limit": live.rate_limit(row.rate_limit),
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}


def load_model_config(session: Session, config_id: str) -> ModelConfig:
    row = session.scalars(select(ModelConfig).where(ModelConfig.id == config_id).options(*_OPTIONS)).one_or_none()
    if row is None:
        raise not_found("model config", config_id)
    return row


def _check_unique(session: Session, model_name: str, provider: str | None, itself: str | None = None) -> None:
    provider_match = ModelConfig.provider.is_(None) if provider is None else ModelConfig.provider == provider
    other = session.scalar(select(ModelConfig.id).where(ModelConfig.model_name == model_name, provider_match))
    if other is not None and other != itself:
        where = f"provider {provider!r}" if provider else "any provider"
        raise conflict(f"a model config for {model_name!r} on {where} already exists (id {other!r})")


def _envelope(message: str, view: dict[str, Any]) -> dict[str, Any]:
    return {"message": message, "model_config": view}


@router.get("", response_model=ModelConfigList, summary="List model configs")
async def list_model_configs(
    runtime: RuntimeDep, page: PageDep, model_name: str | None = None,
    provider: Annotated[str | None, Query(description="A provider name, or '*' for the any-provider configs.")] = None,
    search: Annotated[str | None, Query(description="Case-insensitive part of the model name.")] = None,
) -> dict[str, Any]:
    live = LiveUsage()

    def query(session: Session) -> tuple[int, list[dict[str, Any]]]:
        statement = select(ModelConfig)
        if model_name is not None:
            statement = statement.where(ModelConfig.model_name == model_name)
        if provider == "*":
            statement = statement.where(ModelConfig.provider.is_(None))
        elif provider is not None:
            statement = statement.where(ModelConfig.provider == provider)
        if search:
            statement = statement.where(search_filter(search, ModelConfig.model_name))
        order = (ModelConfig.model_name, ModelConfig.provider, ModelConfig.id)
        total, rows = paginate(session, statement, page, order, _OPTIONS)
        return total, [model_config_view(row, live) for row in rows]

    total, configs = await read(runtime, query)
    await live.fill(runtime.store, runtime.clock_ms())
    return {"model_configs": configs, "count": total, "limit": page.limit, "offset": page.offset}


@router.post("", status_code=201, response_model=ModelConfigEnvelope, summary="Create a model config")
async def create_model_config(body: ModelConfigCreate, runtime: RuntimeDep) -> dict[str, Any]:
    live = LiveUsage()

    def write(writer: ApiWriter) -> ModelConfig:
        check_provider(writer.runtime.settings, body.provider)
        _check_unique(writer.session, body.model_name, body.provider)
        identity = {"id": new_id(), "model_name": body.model_name, "provider": body.provider}
        row, diff = writer.upsert(None, ModelConfig, identity, {})
        writer.sync_budget(row, body.budget, diff)
        writer.sync_rate_limit(row, body.rate_limit, diff)
        writer.record(row, KIND, row.id, diff)
        return row

    view = await change(runtime, write, lambda row: model_config_view(row, live))
    await live.fill(runtime.store, runtime.clock_ms())
    return _envelope("model config created", view)


@router.get("/{config_id}", response_model=ModelConfigEnvelope, summary="Get a model config")
async def get_model_config(config_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    live = LiveUsage()
    view = await read(runtime, lambda session: model_config_view(load_model_config(session, config_id), live))
    await live.fill(runtime.store, runtime.clock_ms())
    return _envelope("model config found", view)


@partial_update(router, "/{config_id}", response_model=ModelConfigEnvelope,
                  summary="Change a model config (partial)")
async def update_model_config(config_id: str, body: ModelConfigUpdate, runtime: RuntimeDep,
                              reset_usage: Annotated[bool, RESET_USAGE] = False) -> dict[str, Any]:
    live = LiveUsage()
    stated = body.model_fields_set

    def write(writer: ApiWriter) -> ModelConfig:
        row = load_model_config(writer.session, config_id)
        values = {name: getattr(body, name) for name in ("model_name", "provider") if name in stated}
        if values:
            check_provider(writer.runtime.settings, values.get("provider"))
            _check_unique(writer.session, values.get("model_name", row.model_name),
                          values.get("provider", row.provider), itself=row.id)
        row, diff = writer.upsert(row, ModelConfig, {}, values)
        update_limits(writer, row, body, diff, reset_usage=reset_usage)
        writer.record(row, KIND, config_id, diff)
        return row

    view = await change(runtime, write, lambda row: model_config_view(row, live))
    await live.fill(runtime.store, runtime.clock_ms())
    return _envelope("model config updated", view)


@router.delete("/{config_id}", response_model=Message, summary="Delete a model config")
async def delete_model_config(config_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    def write(writer: ApiWriter) -> None:
        row = load_model_config(writer.session, config_id)
        writer.delete(row, KIND, config_id, model_config_view(row, LiveUsage()))

    await change(runtime, write, lambda _: None)
    return {"message": f"model config {config_id!r} deleted"}


def _reset(which: Which, label: str) -> Any:
    async def reset(config_id: str, runtime: RuntimeDep) -> dict[str, Any]:
        live = LiveUsage()
        view = await reset_route(runtime, lambda session: load_model_config(session, config_id), which, KIND,
                                 config_id, lambda row: model_config_view(row, live))
        await live.fill(runtime.store, runtime.clock_ms())
        return _envelope(f"{label} usage reset", view)

    return reset


router.add_api_route("/{config_id}/budget/reset", _reset("budget", "budget"), methods=["POST"],
                     response_model=ModelConfigEnvelope, summary="Reset a model config's budget usage")
router.add_api_route("/{config_id}/rate-limit/reset", _reset("rate_limit", "rate limit"), methods=["POST"],
                     response_model=ModelConfigEnvelope, summary="Reset a model config's rate-limit usage")
