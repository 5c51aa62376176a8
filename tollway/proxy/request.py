"""A client's request, parsed and checked before anything else happens."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tollway.errors import bad_request
from tollway.governance.names import BadModelName, canonical_model
from tollway.providers.client import Api
from tollway.proxy.worst_case import MAX_OUTPUT_CAP

_REQUIRED = {Api.CHAT: "messages", Api.COMPLETIONS: "prompt", Api.EMBEDDINGS: "input", Api.MESSAGES: "messages",
             Api.COUNT_TOKENS: "messages", Api.GENERATE_CONTENT: "contents", Api.CONVERSE: "messages"}
# (Responses: `input` may be left out: a stored prompt, a previous response)

_CAPS = ("max_completion_tokens", "max_tokens", "max_output_tokens")  # the last: Responses API
_GOOGLE_CAP = ("maxOutputTokens",)
_CONVERSE_CAP = ("maxTokens",)


@dataclass(slots=True)
class ClientRequest:
    api: Api
    body: dict[str, Any]
    size: int
    model: str
    stream: bool
    wants_usage: bool  # the client itself asked for the stream's usage chunk
    max_tokens: int | None
    tags: tuple[str, ...] = ()  # x-tollway-tags / metadata.tags (`tollway.proxy.request_tags`)


def parse_request(api: Api, raw: bytes, route: Mapping[str, Any] | None = None) -> ClientRequest:
    """Parse and validate the body; raise a 400 that says what is wrong. ``route``: fields
    the route's path gives (Google's API names the model and the stream in the URL)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    if route:
        body.update(route)
    model = body.get("model")
    if model is None:
        raise bad_request("missing required field 'model'", "model")
    if not isinstance(model, str):
        raise bad_request("'model' must be a non-empty string", "model")
    try:
        model = canonical_model(model)
    except BadModelName as exc:
        raise bad_request(str(exc), "model") from None
    field = _REQUIRED.get(api)
    if field is not None and field not in body:
        raise bad_request(f"missing required field '{field}'", field)
    if api in (Api.CHAT, Api.MESSAGES, Api.COUNT_TOKENS, Api.CONVERSE):
        _check_messages(body["messages"])
    elif api in (Api.RESPONSES, Api.RESPONSES_INPUT_TOKENS) and not isinstance(body.get("input", ""), (str, list)):
        raise bad_request("'input' must be a string or an array of input items", "input")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be true or false", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object", "stream_options")
    wants_usage = bool(options and options.get("include_usage") is True)
    _check_cap_fields(api, body)
    if api is Api.GENERATE_CONTENT:
        if not isinstance(body["contents"], list) or not body["contents"]:
            raise bad_request("'contents' must be a non-empty array", "contents")
        max_tokens = _max_tokens(body.get("generationConfig"), _GOOGLE_CAP, "generationConfig.")
    elif api is Api.CONVERSE:
        max_tokens = _max_tokens(body.get("inferenceConfig"), _CONVERSE_CAP, "inferenceConfig.")
    else:
        max_tokens = _max_tokens(body, _CAPS)
    if api is Api.MESSAGES and max_tokens is None:
        raise bad_request("missing required field 'max_tokens'", "max_tokens")
    return ClientRequest(api, body, len(raw), model, stream, wants_usage, max_tokens)


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request(f"messages[{i}] must be an object", "messages")
        role = message.get("role")
        if not isinstance(role, str):
            raise bad_request(f"messages[{i}].role must be a string", "messages")


def _check_cap_fields(api: Api, body: dict[str, Any]) -> None:
    """One output cap per request: two that disagree would let the reservation read one
    while the provider honours the other."""
    if api is Api.MESSAGES and body.get("max_completion_tokens") is not None:
        raise bad_request("'max_completion_tokens' is not a field of the Messages API: its output cap is "
                          "'max_tokens'", "max_completion_tokens")
    if api is Api.CHAT and body.get("max_completion_tokens") is not None and body.get("max_tokens") is not None:
        raise bad_request("'max_completion_tokens' and 'max_tokens' are both set: send one output cap "
                          "(max_completion_tokens), not both", "max_completion_tokens")


def _max_tokens(body: Any, names: tuple[str, ...], where: str = "") -> int | None:
    if not isinstance(body, dict):
        return None  # Google's generationConfig, Bedrock's inferenceConfig: their shape is checked with the worst case
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_OUTPUT_CAP:
            raise bad_request(f"'{where}{name}' must be an integer from 1 to {MAX_OUTPUT_CAP}", where + name)
        return value
    return None
