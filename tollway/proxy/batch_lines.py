"""The requests of a batch, read one by one: checked, rewritten for the provider, and
summed into the batch's worst case (pure: no I/O).

Every request of a batch must be one the gateway can bound, or the batch would run
ungoverned work: a request that sets no output cap is charged the model's context window
(no answer is longer), and one whose cost the gateway cannot bound is refused (built-in
tools priced per call, background or chained Responses requests, streams). All requests of a
batch go to one provider and one model (OpenAI requires it of a file; the gateway requires it
of Anthropic batches too, so that one set of limits is charged), and for OpenAI to one
endpoint. Each request's ``model`` is rewritten to the provider's own name, so the provider
runs exactly the bytes the gateway read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from tollway.config.schema import EstimateConfig
from tollway.errors import GatewayError, bad_request
from tollway.pricing import PriceCatalog
from tollway.providers.client import Api, ProviderClient
from tollway.proxy.batch_prices import BatchPrices, at_ratio
from tollway.proxy.estimate import demand_of
from tollway.proxy.targets import Target

ENDPOINTS = {"/v1/chat/completions": Api.CHAT, "/v1/embeddings": Api.EMBEDDINGS, "/v1/completions": Api.COMPLETIONS,
             "/v1/responses": Api.RESPONSES}
"""The batch endpoints the gateway can bound, and the API each line's body is read as."""
_UNBOUNDED_FIELDS = {
    "stream": "batch requests do not stream",
    "background": "a batch request runs in the batch",
    "previous_response_id": "a chained response's stored turns are not in the file, so the gateway cannot bound them",
    "conversation": "a conversation's stored turns are not in the file, so the gateway cannot bound them",
    "web_search_options": "web search is priced per call, which the gateway does not bound in a batch",
}
_PRICED_TOOL_TYPES = ("function", "custom")  # tools whose cost is the tokens of their call


@dataclass(frozen=True, slots=True)
class BatchTarget:
    """Where a batch's requests go, resolved from its first request."""

    target: Target
    provider: ProviderClient
    upstream_model: str


Resolve = Callable[[str], BatchTarget]
"""Resolves a request's ``model`` (as the client named it) for the key submitting the batch;
raises the gateway's 4xx for a model it may not use."""


@dataclass(slots=True)
class BatchTally:
    """A batch's requests read so far: their target, endpoint and summed worst case."""

    resolve: Resolve
    pricing: PriceCatalog
    batch_prices: BatchPrices
    estimates: EstimateConfig
    require_price: bool
    requests: int = 0
    worst_tokens: int = 0
    worst_cost_nano: int = 0  # at the batch price
    target: BatchTarget | None = None
    endpoint: str | None = None
    _model: str | None = None  # the model as the first request named it
    _custom_ids: set[str] | None = None
    # Reads the end user a request names in its body (`tollway.proxy.end_user.end_user_in_body`);
    # those named are collected in ``end_users`` (a batch is charged to one).
    end_user_of: Callable[[Api, dict[str, Any]], str | None] | None = None
    end_users: set[str] = dataclasses.field(default_factory=set)

    def openai_line(self, raw: bytes) -> bytes:
        """One line of an OpenAI batch file: checked, counted, and rewritten (the bytes to send)."""
        where = f"line {self.requests + 1}"
        line = _object(raw, where)
        _custom_id(self, line.get("custom_id"), where)
        if line.get("method") != "POST":
            raise bad_request(f"{where}: 'method' must be \"POST\"", "file")
        url = line.get("url")
        api = ENDPOINTS.get(url) if isinstance(url, str) else None
        if api is None:
            raise bad_request(f"{where}: 'url' {url!r} is not a batch endpoint this gateway governs "
                              f"({', '.join(ENDPOINTS)})", "file")
        if self.endpoint is not None and url != self.endpoint:
            raise bad_request(f"{where}: 'url' {url!r} differs from the file's first line ({self.endpoint!r}): "
                              "a batch runs one endpoint", "file")
        self.endpoint = url
        line["body"] = self._request(api, line.get("body"), where, "body")
        return orjson.dumps(line)

    def anthropic_request(self, request: Any) -> dict[str, Any]:
        """One request of an Anthropic message batch: checked, counted, and rewritten."""
        where = f"requests[{self.requests}]"
        if not isinstance(request, dict):
            raise bad_request(f"{where} must be an object with custom_id and params", "requests")
        _custom_id(self, request.get("custom_id"), where)
        return {**request, "params": self._request(Api.MESSAGES, request.get("params"), where, "params")}

    def _request(self, api: Api, body: Any, where: str, name: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request(f"{where}: '{name}' must be an object", "requests" if api is Api.MESSAGES else "file")
        param = "requests" if api is Api.MESSAGES else "file"
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise bad_request(f"{where}: '{name}.model' is required", param)
        if self._model is None:
            self.target, self._model = self.resolve(model), model
        elif model != self._model:
            raise bad_request(f"{where}: model {model!r} differs from the batch's first request ({self._model!r}): "
                              "a batch runs one model", param)
        _bounded(body, where, name, param)
        if self.end_user_of is not None:
            try:
                end_user = self.end_user_of(api, body)
            except GatewayError as err:  # an unusable end user id: said of the request
                raise bad_request(f"{where}: {err.message}", param) from None
            if end_user is not None:
                self.end_users.add(end_user)
        assert self.target is not None
        upstream = {**body, "model": self.target.upstream_model}
        self._count(api, upstream, where, param)
        self.requests += 1
        return upstream

    def _count(self, api: Api, body: dict[str, Any], where: str, param: str) -> None:
        assert self.target is not None
        provider, model = self.target.provider, self.target.target.model
        try:
            demand = demand_of(api, body, provider, model, self.pricing, self.estimates, self.require_price)
        except GatewayError as err:  # conflicting caps, an unpriced model (require_price): said of the line
            raise GatewayError(err.status, err.type, f"{where}: {err.message}", code=err.code, param=param) from None
        cap = demand.worst.cap
        if cap is None:  # no cap: no answer is longer than the model's context window
            cap = self.batch_prices.context_window(provider.type, provider.name, model)
            if cap is None:
                raise bad_request(f"{where}: sets no output cap (max_tokens) and the context window of {model!r} is "
                                  "unknown, so the gateway cannot bound it: set one", param)
        _, _, tokens, cost = demand(cap)
        self.worst_tokens += tokens
        self.worst_cost_nano += at_ratio(cost, self.batch_prices.ratio(provider.type, provider.name, model))


def _object(raw: bytes, where: str) -> dict[str, Any]:
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request(f"{where} is not valid JSON", "file") from None
    if not isinstance(line, dict):
        raise bad_request(f"{where} must be a JSON object", "file")
    return line


def _custom_id(tally: BatchTally, custom_id: Any, where: str) -> None:
    param = "file" if where.startswith("line") else "requests"
    if not isinstance(custom_id, str) or not custom_id:
        raise bad_request(f"{where}: 'custom_id' is required", param)
    seen = tally._custom_ids if tally._custom_ids is not None else set()
    if custom_id in seen:
        raise bad_request(f"{where}: custom_id {custom_id!r} is used twice", param)
    seen.add(custom_id)
    tally._custom_ids = seen


def _bounded(body: dict[str, Any], where: str, name: str, param: str) -> None:
    """A 400 for a request whose cost the gateway cannot bound."""
    for field, why in _UNBOUNDED_FIELDS.items():
        if body.get(field) not in (None, False):
            raise bad_request(f"{where}: '{name}.{field}' is not allowed in a batch: {why}", param)
    tools = body.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind is not None and kind not in _PRICED_TOOL_TYPES and not _anthropic_custom(tool):
                raise bad_request(f"{where}: the built-in tool {kind!r} is priced per use, which the gateway does not "
                                  "bound in a batch", param)


def _anthropic_custom(tool: dict[str, Any]) -> bool:
    """An Anthropic tool given by its schema (its ``type`` absent or "custom")."""
    return "input_schema" in tool and tool.get("type") in (None, "custom")
