"""`GET /v1/models` and `GET /v1/models/{id}`, behind the same key checks as completions.

A key sees only the models it may use (its provider configs and allowed models); a
request without a key is refused when keys are enforced. Answers come in the shape of the
client's API: Anthropic's when the request carries `anthropic-version` (as Anthropic's SDKs
always do), OpenAI's otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson

from tollway.asgi import JSON_HEADERS, Scope, Send, header, respond, respond_error
from tollway.denials import error_body
from tollway.errors import GatewayError
from tollway.governance.decisions import Denial, denial_headers
from tollway.governance.engine import access_denial, hash_key, identify_key
from tollway.governance.model import VirtualKeyPolicy
from tollway.proxy.auth import presented_key
from tollway.proxy.policy_source import PolicySource
from tollway.server.models_catalog import ModelCatalog

_PREFIX = "/v1/models/"


class ModelsRoute:
    """Lists and describes the models a caller may use."""

    def __init__(self, catalog: ModelCatalog, snapshot: PolicySource, aliases: Mapping[str, str],
                 clock_ms: Callable[[], int]) -> None:
        self._catalog = catalog
        self._snapshot = snapshot
        self._aliases = aliases
        self._clock_ms = clock_ms  # for keys' expiry

    @staticmethod
    def matches(path: str) -> bool:
        """Whether ``path`` names one model (`/v1/models/{id}`; ids may hold slashes)."""
        return path.startswith(_PREFIX) and len(path) > len(_PREFIX)

    async def list(self, scope: Scope, send: Send) -> None:
        anthropic = header(scope, b"anthropic-version") is not None
        key = await self._caller(scope, send, anthropic)
        if key is False:
            return
        models = [m for m in await self._catalog.models() if self._visible(key, m)]
        await respond(send, 200, orjson.dumps(_anthropic_list(models) if anthropic else {"object": "list", "data": models}),
                      JSON_HEADERS)

    async def retrieve(self, scope: Scope, send: Send) -> None:
        anthropic = header(scope, b"anthropic-version") is not None
        key = await self._caller(scope, send, anthropic)
        if key is False:
            return
        wanted = scope["path"][len(_PREFIX):]
        model = next((m for m in await self._catalog.models() if m["id"] == wanted), None)
        if model is None or not self._visible(key, model):
            # One answer for "no such model" and "not yours": a key learns nothing about others' models.
            error = GatewayError(404, "not_found_error", f"model {wanted!r} does not exist or this key may not use it",
                                 param="model", code="model_not_found")
            await respond_error(send, error, anthropic=anthropic)
            return
        await respond(send, 200, orjson.dumps(_anthropic_model(model) if anthropic else model), JSON_HEADERS)

    async def _caller(self, scope: Scope, send: Send, anthropic: bool) -> VirtualKeyPolicy | Literal[False] | None:
        """The caller's key (None: no key, none required); False once a denial was sent."""
        value = presented_key(scope)
        key_hash = hash_key(value) if value else None
        try:
            snapshot = await self._snapshot.for_key(key_hash)
        except GatewayError as err:  # keys loaded on demand and the lookup cannot be made: 503
            await respond_error(send, err, anthropic=anthropic)
            return False
        found = identify_key(snapshot, key_hash, self._clock_ms())
        if isinstance(found, Denial):
            await respond(send, found.decision.status, error_body(found, anthropic), JSON_HEADERS + denial_headers(found))
            return False
        return found

    def _visible(self, key: VirtualKeyPolicy | None, model: dict[str, Any]) -> bool:
        if key is None:
            return True
        target = self._aliases.get(model["id"], model["id"])
        provider, _, name = target.partition("/")
        return bool(name) and access_denial(key, provider, name) is None


def _anthropic_model(model: dict[str, Any]) -> dict[str, Any]:
    return {"type": "model", "id": model["id"], "display_name": model["id"], "created_at": "1970-01-01T00:00:00Z"}


def _anthropic_list(models: list[dict[str, Any]]) -> dict[str, Any]:
    data = [_anthropic_model(m) for m in models]
    return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}
