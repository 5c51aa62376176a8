"""OpenAI and Azure OpenAI routes of the mock upstream: chat completions, legacy completions,
embeddings and models, in the real wire format (streaming included).

Azure routes (`/openai/deployments/{deployment}/...`) take the same bodies, need
`?api-version=` and an `api-key` (or `Authorization: Bearer`) header, answer with the
deployment as the model, and start every stream with Azure's `prompt_filter_results`
chunk (empty `choices`, no usage), as the real service does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tollway.testing import mock_content as content
from tollway.testing.mock_http import MockCall, bearer_token, error_response, send_json, send_sse, sse_data

MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "gpt-3.5-turbo-instruct", "text-embedding-3-small",
          "text-embedding-3-large")
"""Model ids listed by `GET /v1/models` (any model id is accepted by the other routes)."""

_DONE = b"data: [DONE]\n\n"
_FINGERPRINT = "fp_mock"
_TOOL_ARGUMENT_PIECE = 8
_AZURE_FILTER_CHUNK = sse_data({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]})


@dataclass(slots=True, frozen=True)
class _Exchange:
    """What every OpenAI answer needs: the model to echo, ids, and response headers."""

    model: str
    number: int
    created: int
    azure: bool

    @property
    def headers(self) -> dict[str, str]:
        return {"x-request-id": f"req_mock{self.number}"}


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> web.Response:
    return error_response("openai", status, message, param=param, code=code)


def _accept(call: MockCall, required: str) -> _Exchange | web.Response:
    """Check auth, api-version (Azure), the JSON body, the model and the `required` field."""
    deployment = call.request.match_info.get("deployment")
    if deployment is not None:
        if not (call.header("api-key") or bearer_token(call)):
            return _error(401, "Access denied due to missing subscription key. Make sure to include "
                               "the api-key header when making API calls.", code="401")
        if not call.request.query.get("api-version"):
            return _error(400, "The api-version query parameter (?api-version=) is required for all requests.",
                          param="api-version", code="MissingApiVersionParameter")
    elif not bearer_token(call):
        return _error(401, "You didn't provide an API key. You need to provide your API key in an "
                           "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
    body = call.body
    if call.body_invalid or not isinstance(body, dict):
        return _error(400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                           "using your HTTP library correctly. The OpenAI API expects a JSON payload.)")
    model = deployment or body.get("model")
    if not isinstance(model, str) or not model:
        return _error(400, "you must provide a model parameter", param="model", code="missing_required_parameter")
    if required not in body:
        return _error(400, f"Missing required parameter: '{required}'.", param=required,
                      code="missing_required_parameter")
    return _Exchange(model, call.state.next_id(), int(time.time()), deployment is not None)


def _usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": content.cached_part(prompt, cached), "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _max_tokens(body: dict[str, Any]) -> Any:
    value = body.get("max_completion_tokens")
    return value if value is not None else body.get("max_tokens")


@dataclass(slots=True, frozen=True)
class _ToolCall:
    id: str
    name: str
    arguments: str


def _weather_tool_call(body: dict[str, Any], messages: list[Any], number: int) -> _ToolCall | None:
    """A call of the first function tool when the last user turn asks about the weather."""
    tools = body.get("tools")
    if not isinstance(tools, list) or body.get("tool_choice") == "none" or not content.asks_for_weather(messages):
        return None
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            arguments = orjson.dumps(content.tool_arguments(function.get("parameters"))).decode()
            return _ToolCall(f"call_mock{number}", function["name"], arguments)
    return None


# -- chat completions ------------------------------------------------------------------------

async def chat_completions(call: MockCall) -> web.StreamResponse:
    """`POST /v1/chat/completions` (and its Azure twin), JSON or SSE."""
    exchange = _accept(call, "messages")
    if isinstance(exchange, web.Response):
        return exchange
    body: dict[str, Any] = call.body
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return _error(400, "Invalid 'messages': expected a non-empty array.", param="messages")
    settings = call.state.settings
    count, capped = content.answer_tokens(_max_tokens(body), settings.completion_tokens)
    usage = _usage(content.chat_prompt_tokens(messages), count, settings.cached_tokens)
    tool_call = _weather_tool_call(body, messages, exchange.number)
    finish = "tool_calls" if tool_call else "length" if capped else "stop"
    pieces = _json_answer_pieces(body.get("response_format")) or content.answer_words(count)
    if body.get("stream") is True:
        events = _chat_events(exchange, pieces, tool_call, finish, usage if _include_usage(body) else None)
        return await send_sse(call, events, exchange.headers)
    return await send_json(call, _chat_payload(exchange, pieces, tool_call, finish, usage), exchange.headers)


def _json_answer_pieces(response_format: Any) -> list[str] | None:
    """A JSON answer matching `response_format` (json_schema or json_object), in stream pieces."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind not in ("json_schema", "json_object"):
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if kind == "json_schema" and isinstance(spec, dict) else None
    text = orjson.dumps(content.tool_arguments(schema)).decode()
    return [text[i:i + _TOOL_ARGUMENT_PIECE] for i in range(0, len(text), _TOOL_ARGUMENT_PIECE)]


def _chat_payload(exchange: _Exchange, pieces: list[str], tool_call: _ToolCall | None, finish: str,
                  usage: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None if tool_call else "".join(pieces),
                               "refusal": None, "annotations": []}
    if tool_call:
        message["tool_calls"] = [{"id": tool_call.id, "type": "function",
                                  "function": {"name": tool_call.name, "arguments": tool_call.arguments}}]
    return {
        "id": f"chatcmpl-mock{exchange.number}", "object": "chat.completion", "created": exchange.created,
        "model": exchange.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage, "service_tier": "default", "system_fingerprint": _FINGERPRINT,
    }


def _chat_events(exchange: _Exchange, pieces: list[str], tool_call: _ToolCall | None, finish: str,
                 usage: dict[str, Any] | None) -> Iterator[bytes]:
    """The SSE events of a streamed chat completion; `usage` only when include_usage was asked."""
    base = {"id": f"chatcmpl-mock{exchange.number}", "object": "chat.completion.chunk",
            "created": exchange.created, "model": exchange.model, "service_tier": "default",
            "system_fingerprint": _FINGERPRINT}
    extra = {"usage": None} if usage is not None else {}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse_data({**base, "choices": [choice], **extra})

    if exchange.azure:
        yield _AZURE_FILTER_CHUNK
    yield chunk({"role": "assistant", "content": "", "refusal": None})
    if tool_call:
        yield from _tool_call_deltas(tool_call, chunk)
    else:
        for piece in pieces:
            yield chunk({"content": piece})
    yield chunk({}, finish)
    if usage is not None:
        yield sse_data({**base, "choices": [], "usage": usage})
    yield _DONE


def _tool_call_deltas(tool_call: _ToolCall, chunk: Any) -> Iterator[bytes]:
    yield chunk({"tool_calls": [{"index": 0, "id": tool_call.id, "type": "function",
                                 "function": {"name": tool_call.name, "arguments": ""}}]})
    arguments = tool_call.arguments
    for start in range(0, len(arguments), _TOOL_ARGUMENT_PIECE):
        piece = arguments[start:start + _TOOL_ARGUMENT_PIECE]
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})


# -- legacy completions ----------------------------------------------------------------------

async def completions(call: MockCall) -> web.StreamResponse:
    """`POST /v1/completions` (and its Azure twin): one choice per prompt, JSON or SSE."""
    exchange = _accept(call, "prompt")
    if isinstance(exchange, web.Response):
        return exchange
    body: dict[str, Any] = call.body
    prompts = content.split_prompts(body["prompt"])
    if not prompts or not all(isinstance(p, str | list) for p in prompts):
        return _error(400, "Invalid 'prompt': expected a string, an array of strings or token arrays.",
                      param="prompt")
    settings = call.state.settings
    count, capped = content.answer_tokens(body.get("max_tokens"), settings.completion_tokens)
    prompt_tokens = sum(content.prompt_item_tokens(p) for p in prompts)
    usage = _usage(prompt_tokens, count * len(prompts), settings.cached_tokens)
    finish = "length" if capped else "stop"
    if body.get("stream") is True:
        events = _completion_events(exchange, len(prompts), count, finish, usage if _include_usage(body) else None)
        return await send_sse(call, events, exchange.headers)
    text = content.answer_text(count)
    payload = {
        "id": f"cmpl-mock{exchange.number}", "object": "text_completion", "created": exchange.created,
        "model": exchange.model,
        "choices": [{"text": text, "index": i, "logprobs": None, "finish_reason": finish} for i in range(len(prompts))],
        "usage": usage, "system_fingerprint": _FINGERPRINT,
    }
    return await send_json(call, payload, exchange.headers)


def _completion_events(exchange: _Exchange, prompts: int, count: int, finish: str,
                       usage: dict[str, Any] | None) -> Iterator[bytes]:
    base = {"id": f"cmpl-mock{exchange.number}", "object": "text_completion", "created": exchange.created,
            "model": exchange.model, "system_fingerprint": _FINGERPRINT}
    extra = {"usage": None} if usage is not None else {}

    def chunk(index: int, text: str, finish_reason: str | None = None) -> bytes:
        choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}
        return sse_data({**base, "choices": [choice], **extra})

    if exchange.azure:
        yield _AZURE_FILTER_CHUNK
    for index in range(prompts):
        for word in content.answer_words(count):
            yield chunk(index, word)
        yield chunk(index, "", finish)
    if usage is not None:
        yield sse_data({**base, "choices": [], "usage": usage})
    yield _DONE


# -- embeddings and models -------------------------------------------------------------------

async def embeddings(call: MockCall) -> web.StreamResponse:
    """`POST /v1/embeddings` (and its Azure twin): deterministic vectors, float or base64."""
    exchange = _accept(call, "input")
    if isinstance(exchange, web.Response):
        return exchange
    body: dict[str, Any] = call.body
    items = content.split_prompts(body["input"])
    if not items or not all(isinstance(item, str) or _is_token_array(item) for item in items):
        return _error(400, "'$.input' is invalid. Please check the API reference.", param="input")
    dims = body.get("dimensions")
    if dims is None:
        dims = call.state.settings.embedding_dims
    elif not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
        return _error(400, "Invalid 'dimensions': expected a positive integer.", param="dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        return _error(400, "Invalid 'encoding_format': expected 'float' or 'base64'.", param="encoding_format")
    data = [{"object": "embedding", "index": index, "embedding": _encode(content.embedding_vector(item, dims), encoding)}
            for index, item in enumerate(items)]
    tokens = sum(content.prompt_item_tokens(item) for item in items)
    payload = {"object": "list", "data": data, "model": exchange.model,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return await send_json(call, payload, exchange.headers)


def _is_token_array(item: Any) -> bool:
    return isinstance(item, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in item)


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    return content.embedding_base64(vector) if encoding == "base64" else vector


async def list_models(call: MockCall) -> web.StreamResponse:
    """`GET /v1/models` in OpenAI's shape."""
    if not bearer_token(call):
        return _error(401, "You didn't provide an API key.")
    data = [{"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "tollway-mock"} for model in MODELS]
    return await send_json(call, {"object": "list", "data": data})


async def retrieve_model(call: MockCall) -> web.StreamResponse:
    """`GET /v1/models/{model}`: any id exists."""
    if not bearer_token(call):
        return _error(401, "You didn't provide an API key.")
    model = call.request.match_info["model"]
    return await send_json(call, {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "tollway-mock"})
