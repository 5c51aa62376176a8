"""Bedrock `Converse` → OpenAI chat (the Bedrock adapter's outbound translator): whole
responses, ConverseStream events, usage and errors.

Pure: dicts in, dicts out (the event-stream framing is decoded by `bedrock_eventstream`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from tollway.providers._translate_common import JSON, UpstreamStreamError, dumps_str, openai_usage
from tollway.usage import Usage

# Converse stopReason → OpenAI finish_reason (anything else: "stop").
FINISH_REASON: Mapping[str, str] = MappingProxyType({
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
})
# AWS error type (x-amzn-ErrorType, or a stream's :exception-type) → HTTP status.
ERROR_STATUS: Mapping[str, int] = MappingProxyType({
    "ValidationException": 400, "AccessDeniedException": 403, "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403, "ExpiredTokenException": 403, "IncompleteSignatureException": 403,
    "ResourceNotFoundException": 404, "ModelTimeoutException": 408, "ModelErrorException": 424,
    "ThrottlingException": 429, "ServiceQuotaExceededException": 429, "ModelNotReadyException": 429,
    "InternalServerException": 500, "ServiceUnavailableException": 503, "ModelStreamErrorException": 424,
})
# HTTP status → the OpenAI and Anthropic error types a client of those APIs expects.
_OPENAI_TYPE = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 408: "timeout", 429: "rate_limit_error"}
_ANTHROPIC_TYPE = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 429: "rate_limit_error", 503: "overloaded_error"}


def usage_from_converse(usage: Any) -> Usage | None:
    """Usage from Converse's ``usage``: ``inputTokens`` leaves out cache reads and writes
    (as Anthropic's does); the gateway's prompt tokens include them."""
    if not isinstance(usage, Mapping):
        return None
    read, write = _int(usage.get("cacheReadInputTokens")), _int(usage.get("cacheWriteInputTokens"))
    return Usage(prompt_tokens=_int(usage.get("inputTokens")) + read + write,
                 completion_tokens=_int(usage.get("outputTokens")), cached_tokens=read, cache_write_tokens=write)


def converse_response_to_chat(resp: Mapping[str, Any], model: str, *, created: int | None = None) -> JSON:
    """A `Converse` response as a ``chat.completion`` for ``model``."""
    message = (resp.get("output") or {}).get("message") or {}
    text, calls = _blocks(message.get("content") or ())
    chat_message: JSON = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        chat_message["tool_calls"] = calls
    reason = resp.get("stopReason")
    out: JSON = {"id": "chatcmpl-bedrock-" + str(resp.get("ResponseMetadata", {}).get("RequestId") or int(time.time())),
                 "object": "chat.completion", "created": created if created is not None else int(time.time()),
                 "model": model, "choices": [{"index": 0, "message": chat_message, "logprobs": None,
                                              "finish_reason": FINISH_REASON.get(str(reason), "stop")}]}
    usage = usage_from_converse(resp.get("usage"))
    if usage is not None:
        out["usage"] = openai_usage(usage)
    return out


def _blocks(content: Any) -> tuple[str, list[JSON]]:
    """The answer's text (reasoning left out) and its tool uses as chat tool calls."""
    texts: list[str] = []
    calls: list[JSON] = []
    for block in content:
        if not isinstance(block, Mapping):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        use = block.get("toolUse")
        if isinstance(use, Mapping):
            calls.append({"id": str(use.get("toolUseId") or f"call_{len(calls)}"), "type": "function",
                          "function": {"name": use.get("name"), "arguments": dumps_str(use.get("input") or {})}})
    return "".join(texts), calls


class ConverseStreamToChat:
    """Turns ConverseStream events (name and JSON payload) into chat completion chunks.

    Text and tool-input deltas go out as they come; a tool use starts with its id and
    name (`contentBlockStart`). The usage arrives last (`metadata`), after `messageStop`:
    the finish chunk waits for it, and the usage chunk follows when the client asked."""

    def __init__(self, model: str, wants_usage: bool) -> None:
        self._model = model
        self._wants_usage = wants_usage
        self._id = f"chatcmpl-bedrock-{time.time_ns()}"
        self._created = int(time.time())
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._finish: str | None = None
        self.usage: Usage | None = None
        self.started = False

    def feed(self, event: str, payload: Mapping[str, Any]) -> list[JSON]:
        """The chat chunks of one event; raises `UpstreamStreamError` for an exception event."""
        if event == "messageStart":
            self.started = True
            return [self._chunk({"role": "assistant"})]
        if event == "contentBlockStart":
            return self._block_start(payload)
        if event == "contentBlockDelta":
            return self._delta(payload)
        if event == "messageStop":
            self._finish = FINISH_REASON.get(str(payload.get("stopReason")), "stop")
            return []
        if event == "metadata":
            self.usage = usage_from_converse(payload.get("usage")) or self.usage
            return []
        return []  # contentBlockStop, and events this translator does not know

    def _block_start(self, payload: Mapping[str, Any]) -> list[JSON]:
        use = (payload.get("start") or {}).get("toolUse")
        if not isinstance(use, Mapping):
            return []
        index = self._tools[_int(payload.get("contentBlockIndex"))] = len(self._tools)
        call = {"index": index, "id": str(use.get("toolUseId") or f"call_{index}"), "type": "function",
                "function": {"name": use.get("name"), "arguments": ""}}
        return [self._chunk({"tool_calls": [call]})]

    def _delta(self, payload: Mapping[str, Any]) -> list[JSON]:
        delta = payload.get("delta") or {}
        if isinstance(delta.get("text"), str) and delta["text"]:
            return [self._chunk({"content": delta["text"]})]
        use = delta.get("toolUse")
        if isinstance(use, Mapping) and isinstance(use.get("input"), str):
            index = self._tools.get(_int(payload.get("contentBlockIndex")))
            if index is None:
                raise UpstreamStreamError("api_error", "a tool input delta for a block that started no tool use")
            return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": use["input"]}}]})]
        return []  # reasoning deltas: not part of a chat answer

    def finish(self) -> list[JSON]:
        """The finish chunk, and the usage chunk when the client asked for it."""
        out = [self._chunk({}, self._finish or "stop")]
        if self._wants_usage and self.usage is not None:
            out.append({**self._chunk(None), "usage": openai_usage(self.usage)})
        return out

    def _chunk(self, delta: JSON | None, finish: str | None = None) -> JSON:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model,
                "choices": choices}


def stream_exception(exception_type: str, payload: bytes) -> UpstreamStreamError:
    """A ConverseStream exception message (`throttlingException` ...) as a stream error."""
    name = exception_type[:1].upper() + exception_type[1:]
    status = ERROR_STATUS.get(name, 500)
    return UpstreamStreamError(_OPENAI_TYPE.get(status, "api_error"), f"{name}: {_message(payload)}")


def bedrock_error_to_openai(status: int, data: bytes) -> bytes | None:
    """An AWS-shaped error body (``{"message": ...}``) in OpenAI's shape; None when it is not one."""
    message = _aws_message(data)
    if message is None:
        return None
    kind = _OPENAI_TYPE.get(status, "api_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": kind}})


def bedrock_error_to_anthropic(status: int, data: bytes) -> bytes | None:
    """An AWS-shaped error body in Anthropic's shape; None when it is not one."""
    message = _aws_message(data)
    if message is None:
        return None
    return orjson.dumps({"type": "error", "error": {"type": _ANTHROPIC_TYPE.get(status, "api_error"),
                                                    "message": message}})


def _aws_message(data: bytes) -> str | None:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or "error" in body:
        return None
    message = body.get("message", body.get("Message"))
    return str(message) if isinstance(message, str) else None


def _message(payload: bytes) -> str:
    return _aws_message(payload) or payload[:500].decode("utf-8", "replace")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
