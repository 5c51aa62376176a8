"""`/api/governance/model-configs`: limits for a model on one provider, or on any
provider (``provider: null``). (model_name, provider) is unique. Counters follow the
config's id, so renaming a model config keeps its usage."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.api.context import RESET_USAGE, ApiWriter, PageDep, RuntimeDep, partial_update
from tollway.api.entity_routes import EntityRoutes
from tollway.api.errors import ApiError
from tollway.api.limits import LiveUsage, iso, update_limits
from tollway.api.owners import check_provider
from tollway.api.responses import ModelConfigEnvelope, ModelConfigList
from tollway.api.schemas import ModelConfigCreate, ModelConfigUpdate
from tollway.governance.names import model_key
from tollway.store.tables import ModelConfig, new_id

router = APIRouter(prefix="/api/governance/model-configs", tags=["model configs"])

KIND = "model_config"


def model_config_view(row: ModelConfig, live: LiveUsage) -> dict[str, Any]:
    return {"id": row.id, "model_name": row.model_name, "provider": row.provider,
            "budget": live.budget(row.budget), "rate_limit": live.rate_limit(row.rate_limit),
            "concurrency": live.concurrency(row.concurrency),
            "managed_by": row.managed_by, "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}


MODEL_CONFIGS = EntityRoutes(ModelConfig, KIND, param="config_id", view=model_config_view,
                             envelope_model=ModelConfigEnvelope, searched=(ModelConfig.model_name,))


def _check_unique(session: Session, model_name: str, provider: str | None, itself: str | None = None) -> None:
    """409 naming ``model_name`` when another config of the provider has the same name as
    requests are matched: trimmed, NFKC-normalised, without regard to case
    (`tollway.governance.names`). Compared here, not in SQL, which knows neither; a
    provider has few model configs."""
    provider_match = ModelConfig.provider.is_(None) if provider is None else ModelConfig.provider == provider
    wanted = model_key(model_name)
    for other, name in session.execute(select(ModelConfig.id, ModelConfig.model_name).where(provider_match)):
        if other != itself and model_key(name) == wanted:
            where = f"provider {provider!r}" if provider else "any provider"
            same = "already exists" if name == model_name else f"already exists as {name!r} (names are matched without regard to case)"
            raise ApiError(409, f"model_name: a model config for {model_name!r} on {where} {same}: id {other!r}",
                           field="model_name", details=[{"field": "model_name", "message": f"same model as config {other!r}"}])


@router.get("", response_model=ModelConfigList, summary="List model configs")
async def list_model_configs(
    runtime: RuntimeDep, page: PageDep, model_name: str | None = None,
    provider: Annotated[str | None, Query(description="A provider name, or '*' for the any-provider configs.")] = None,
    search: Annotated[str | None, Query(description="Case-insensitive part of the model name.")] = None,
) -> dict[str, Any]:
    statement = select(ModelConfig)
    if model_name is not None:
        statement = statement.where(ModelConfig.model_name == model_name)
    if provider == "*":
        statement = statement.where(ModelConfig.provider.is_(None))
    elif provider is not None:
        statement = statement.where(ModelConfig.provider == provider)
    order = (ModelConfig.model_name, ModelConfig.provider, ModelConfig.id)
    return await MODEL_CONFIGS.page(runtime, page, statement, search, order)


@router.post("", status_code=201, response_model=ModelConfigEnvelope, summary="Create a model config")
async def create_model_config(body: ModelConfigCreate, runtime: RuntimeDep) -> dict[str, Any]:
    def write(writer: ApiWriter) -> ModelConfig:
        check_provider(writer.runtime.settings, body.provider)
        _check_unique(writer.session, body.model_name, body.provider)
        identity = {"id": new_id(), "model_name": body.model_name, "provider": body.provider}
        row, diff = MODEL_CONFIGS.insert(writer, identity, {}, body)
        writer.record(row, KIND, row.id, diff)
        return row

    return await MODEL_CONFIGS.changed(runtime, "model config created", write)


MODEL_CONFIGS.add_get(router, "get_model_config")


@partial_update(router, "/{config_id}", response_model=ModelConfigEnvelope,
                  summary="Change a model config (partial)")
async def update_model_config(config_id: str, body: ModelConfigUpdate, runtime: RuntimeDep,
                              reset_usage: Annotated[bool, RESET_USAGE] = False) -> dict[str, Any]:
    stated = body.model_fields_set

    def write(writer: ApiWriter) -> ModelConfig:
        row = MODEL_CONFIGS.load_to_change(writer.session, config_id)
        values = {name: getattr(body, name) for name in ("model_name", "provider") if name in stated}
        if values:
            check_provider(writer.runtime.settings, values.get("provider"))
            _check_unique(writer.session, values.get("model_name", row.model_name),
                          values.get("provider", row.provider), itself=row.id)
        row, diff = writer.upsert(row, ModelConfig, {}, values)
        update_limits(writer, row, body, diff, reset_usage=reset_usage)
        writer.record(row, KIND, config_id, diff)
        return row

    return await MODEL_CONFIGS.changed(runtime, "model config updated", write)


MODEL_CONFIGS.add_delete(router, "delete_model_config")
MODEL_CONFIGS.add_resets(router)
