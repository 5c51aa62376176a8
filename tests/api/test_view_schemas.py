"""The governed entities' response schemas, as `/api/openapi.json` serves them: every field
a client reads keeps its name, type and presence (new fields may join), the governed part
(limits, `managed_by`, times) reads the same in every entity, and its one definition
(`tollway.api.responses.GovernedView`) is what every view takes it from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

import tollway.api.app  # noqa: F401  (imports every route module: every view is defined)
from tests.api.support import MockThread, admin, gateway_config
from tests.support.gateway import start_gateway
from tests.support.templates import SqliteTemplate
from tollway.api.responses import BudgetView, GovernedView, LimitsView

_LIMITS = {"budget": "BudgetView|null", "rate_limit": "RateLimitView|null", "concurrency": "ConcurrencyView|null?"}
_GOVERNED = {**_LIMITS, "managed_by": "string", "created_at": "string|null", "updated_at": "string|null"}
_END_USER_OWNER = {**_GOVERNED, "end_user_limits": "object|null?"}

# Each view's fields as the document gave them before the governed part was one definition:
# "?" marks a field a response may leave out (not in `required`).
CONTRACT: dict[str, dict[str, str]] = {
    "VirtualKeyView": {
        "id": "string", "name": "string", "description": "string", "value": "string|null?", "value_prefix": "string",
        "is_active": "boolean", "team_id": "string|null", "customer_id": "string|null",
        "allowed_models": "list[string]", "provider_configs": "list[ProviderConfigView]", **_END_USER_OWNER,
        "end_user": "object|null?", "expires_at": "string|null?", "previous_value_expires_at": "string|null?",
        "last_used_at": "string|null?", "allowed_tags": "list[string]?", "forced_tags": "list[string]?"},
    "ProviderConfigView": {"id": "string", "provider": "string", "weight": "number", "allowed_models": "list[string]",
                           "allowed_keys": "list[string]", **_LIMITS},
    "TeamView": {"id": "string", "name": "string", "customer_id": "string|null", **_END_USER_OWNER},
    "CustomerView": {"id": "string", "name": "string", **_END_USER_OWNER},
    "ModelConfigView": {"id": "string", "model_name": "string", "provider": "string|null", **_GOVERNED},
    "ProviderView": {"name": "string", "type": "string", "base_url": "string|null", "configured": "boolean",
                     "keys": "list[ProviderKeyView]", "settings": "object", **_GOVERNED},
    "TagView": {"id": "string", "name": "string", **_GOVERNED},
    "LimitRuleView": {"id": "string", "name": "string", "description": "string", "match": "dict[list[string]]",
                      "per": "list[string]", "when_missing": "string", **_GOVERNED},
}


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory, sqlite_template: SqliteTemplate,
            upstream: MockThread) -> Iterator[dict[str, Any]]:
    """The component schemas of the document a running gateway serves."""
    url = sqlite_template.copy_to(tmp_path_factory.mktemp("views") / "tollway.db")
    gateway = start_gateway(gateway_config(url, upstream.url))
    try:
        with admin(gateway, None) as client:
            answer = client.get("/api/openapi.json")
        assert answer.status_code == 200
        yield answer.json()["components"]["schemas"]
    finally:
        gateway.stop()


def _type(schema: dict[str, Any]) -> str:
    """A property's JSON type in the contract's short notation."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[1]
    if "anyOf" in schema:
        return "|".join(_type(option) for option in schema["anyOf"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list[{_type(schema.get('items', {}))}]"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"dict[{_type(schema['additionalProperties'])}]"
    return str(kind)


def _fields(schema: dict[str, Any]) -> dict[str, str]:
    required = set(schema.get("required", ()))
    return {name: _type(prop) + ("" if name in required else "?") for name, prop in schema["properties"].items()}


@pytest.mark.parametrize("view", sorted(CONTRACT))
def test_every_field_a_client_reads_keeps_its_name_type_and_presence(schemas: dict[str, Any], view: str) -> None:
    served = _fields(schemas[view])
    changed = {name: (expected, served.get(name, "missing")) for name, expected in CONTRACT[view].items()
               if served.get(name) != expected}
    assert not changed, f"{view}: (contract, served) of each changed field: {changed}"


def test_the_governed_part_reads_the_same_in_every_entity(schemas: dict[str, Any]) -> None:
    governed = [name for name, schema in schemas.items() if "budget" in schema.get("properties", {})
                and _type(schema["properties"]["budget"]) == "BudgetView|null"]
    assert set(CONTRACT) <= set(governed)
    for field in ("budget", "rate_limit", "concurrency", "created_at", "updated_at", "managed_by"):
        shapes = {name: schemas[name]["properties"].get(field) for name in governed}
        if field == "managed_by":  # a provider's own wording: only its limits can be the file's
            shapes = {name: shape for name, shape in shapes.items() if shape is not None and name != "ProviderView"}
        elif field in ("created_at", "updated_at"):  # a key's provider config has no times of its own
            shapes = {name: shape for name, shape in shapes.items() if shape is not None}
        assert len({repr(shape) for shape in shapes.values()}) == 1, f"{field} differs between views: {shapes}"


def _models(base: type[BaseModel]) -> Iterator[type[BaseModel]]:
    for model in base.__subclasses__():
        yield model
        yield from _models(model)


def test_every_view_with_limits_takes_them_from_the_one_definition() -> None:
    """A new view that spells out `budget: BudgetView | None` again instead of inheriting
    `LimitsView` (or `GovernedView`, with `managed_by`) fails here."""
    views = {model for model in _models(BaseModel) if model.__module__.startswith("tollway.api.")
             and "budget" in model.model_fields
             and BudgetView in getattr(model.model_fields["budget"].annotation, "__args__", ())}
    assert {view.__name__ for view in views} >= set(CONTRACT)
    apart = sorted(view.__qualname__ for view in views if not issubclass(view, LimitsView)
                   or ("managed_by" in view.model_fields and not issubclass(view, GovernedView)))
    assert not apart, f"views that define the governed fields again: {apart}"
