"""A client's request, parsed and checked before anything else happens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tollway.errors import bad_request
from tollway.providers.client import Api

_REQUIRED = {Api.CHAT: "messages", Api.COMPLETIONS: "prompt", Api.EMBEDDINGS: "input", Api.MESSAGES: "messages",
             Api.COUNT_TOKENS: "messages"}  # Responses: `input` may be left out (a stored prompt, a previous response)


@dataclass(slots=True)
class ClientRequest:
    api: Api
    body: dict[str, Any]
    size: int
    model: str
    stream: bool
    wants_usage: bool  # the client itself asked for the stream's usage chunk
    max_tokens: int | None


def parse_request(api: Api, raw: bytes) -> ClientRequest:
    """Parse and validate the body; raise a 400 that says what is wrong."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    model = body.get("model")
    if model is None:
        raise bad_request("missing required field 'model'", "model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("'model' must be a non-empty string", "model")
    field = _REQUIRED.get(api)
    if field is not None and field not in body:
        raise bad_request(f"missing required field '{field}'", field)
    if api in (Api.CHAT, Api.MESSAGES, Api.COUNT_TOKENS):
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
    max_tokens = _max_tokens(body)
    if api is Api.MESSAGES and max_tokens is None:
        raise bad_request("missing required field 'max_tokens'", "max_tokens")
    return ClientRequest(api, body, len(raw), model.strip(), stream, wants_usage, max_tokens)


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request(f"messages[{i}] must be an object", "messages")
        role = message.get("role")
        if not isinstance(role, str):
            raise bad_request(f"messages[{i}].role must be a string", "messages")


def _max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):  # the last: Responses API
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad_request(f"'{name}' must be a positive integer", name)
        return value
    return None
