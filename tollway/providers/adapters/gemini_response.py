"""Gemini → OpenAI chat (the Gemini adapter's outbound translator): whole responses,
stream chunks, usage and errors; and the error shape Google's own clients expect.

Pure: dicts in, dicts out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from tollway.providers._translate_common import JSON, UpstreamStreamError, dumps_str, openai_usage
from tollway.usage import Usage

# Gemini finishReason → OpenAI finish_reason (anything else: "stop").
FINISH_REASON: Mapping[str, str] = MappingProxyType({
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter", "LANGUAGE": "content_filter",
})
# HTTP status → google.rpc status name (Google's error shape).
RPC_STATUS: Mapping[int, str] = MappingProxyType({
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "RESOURCE_EXHAUSTED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 405: "UNIMPLEMENTED", 409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
})


def usage_from_gemini(meta: Any) -> Usage | None:
    """Usage from Gemini's ``usageMetadata``. The prompt includes cached content (and the
    tool-use prompt); thinking tokens are billed as output, so they count as completion."""
    if not isinstance(meta, Mapping):
        return None
    thoughts = _int(meta.get("thoughtsTokenCount"))
    return Usage(prompt_tokens=_int(meta.get("promptTokenCount")) + _int(meta.get("toolUsePromptTokenCount")),
                 completion_tokens=_int(meta.get("candidatesTokenCount")) + thoughts,
                 cached_tokens=_int(meta.get("cachedContentTokenCount")), reasoning_tokens=thoughts)


def gemini_response_to_chat(resp: Mapping[str, Any], model: str, *, created: int | None = None) -> JSON:
    """A `generateContent` response as a ``chat.completion``; ``model`` is reported when
    the response names no model version."""
    choices = [_choice(candidate, i) for i, candidate in enumerate(resp.get("candidates") or ())]
    if not choices:  # the prompt itself was blocked
        choices = [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "content_filter",
                    "logprobs": None}]
    out: JSON = {"id": "chatcmpl-" + str(resp.get("responseId") or "gemini"), "object": "chat.completion",
                 "created": created if created is not None else int(time.time()),
                 "model": resp.get("modelVersion") or model, "choices": choices}
    usage = usage_from_gemini(resp.get("usageMetadata"))
    if usage is not None:
        out["usage"] = openai_usage(usage)
    return out


def _choice(candidate: Mapping[str, Any], position: int) -> JSON:
    index = candidate.get("index", position)
    text, calls = _parts(candidate, index)
    message: JSON = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return {"index": index, "message": message, "finish_reason": _finish(candidate.get("finishReason"), calls),
            "logprobs": None}


def _parts(candidate: Mapping[str, Any], index: int) -> tuple[str, list[JSON]]:
    """The answer's text (thoughts left out) and its function calls as chat tool calls."""
    texts: list[str] = []
    calls: list[JSON] = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if not isinstance(part, Mapping) or part.get("thought"):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        call = part.get("functionCall")
        if isinstance(call, Mapping):
            calls.append({"id": call.get("id") or f"call_{index}_{len(calls)}", "type": "function",
                          "function": {"name": call.get("name"), "arguments": dumps_str(call.get("args") or {})}})
    return "".join(texts), calls


def _finish(reason: Any, calls: list[JSON]) -> str | None:
    if reason is None:
        return None
    if calls and reason == "STOP":
        return "tool_calls"
    return FINISH_REASON.get(str(reason), "stop")


class GeminiStreamToChat:
    """Turns the chunks of a `streamGenerateContent` stream into chat completion chunks.

    Each Gemini chunk carries whole parts (a function call arrives complete) and the usage
    so far; the usage chunk goes out at the end when the client asked for it."""

    def __init__(self, model: str, wants_usage: bool) -> None:
        self._model = model
        self._wants_usage = wants_usage
        self._id = "chatcmpl-gemini"
        self._created = int(time.time())
        self._started: set[int] = set()
        self._calls: dict[int, int] = {}  # candidate index -> tool calls sent
        self.usage: Usage | None = None

    def feed(self, chunk: Mapping[str, Any]) -> list[JSON]:
        """The chat chunks of one Gemini chunk; raises `UpstreamStreamError` for an error."""
        if isinstance(chunk.get("error"), Mapping):
            error = chunk["error"]
            raise UpstreamStreamError(str(error.get("status") or "api_error"), str(error.get("message") or ""))
        if chunk.get("responseId"):
            self._id = "chatcmpl-" + str(chunk["responseId"])
        self._model = chunk.get("modelVersion") or self._model
        usage = usage_from_gemini(chunk.get("usageMetadata"))
        if usage is not None:
            self.usage = usage
        return [out for i, candidate in enumerate(chunk.get("candidates") or ()) for out in self._candidate(candidate, i)]

    def _candidate(self, candidate: Mapping[str, Any], position: int) -> list[JSON]:
        index = candidate.get("index", position)
        text, calls = _parts(candidate, index)
        delta: JSON = {}
        if index not in self._started:
            self._started.add(index)
            delta["role"] = "assistant"
        if text:
            delta["content"] = text
        if calls:
            sent = self._calls.get(index, 0)
            delta["tool_calls"] = [{"index": sent + j, **call} for j, call in enumerate(calls)]
            self._calls[index] = sent + len(calls)
        finish = candidate.get("finishReason")
        out = [self._chunk([{"index": index, "delta": delta, "finish_reason": None, "logprobs": None}])] if delta else []
        if finish is not None:
            reason = "tool_calls" if self._calls.get(index) and finish == "STOP" else FINISH_REASON.get(str(finish), "stop")
            out.append(self._chunk([{"index": index, "delta": {}, "finish_reason": reason, "logprobs": None}]))
        return out

    def finish(self) -> list[JSON]:
        """The usage chunk, when the client asked for it."""
        if not self._wants_usage or self.usage is None:
            return []
        return [{**self._chunk([]), "usage": openai_usage(self.usage)}]

    def _chunk(self, choices: list[JSON]) -> JSON:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model,
                "choices": choices}


def gemini_error_to_openai(status: int, data: bytes) -> bytes | None:
    """A Google-shaped error body in OpenAI's shape; None when ``data`` is not one."""
    error = _google_error(data)
    if error is None:
        return None
    rpc = str(error.get("status") or RPC_STATUS.get(status, "UNKNOWN"))
    return orjson.dumps({"error": {"message": str(error.get("message") or ""), "type": rpc.lower(), "param": None,
                                   "code": rpc}})


def gemini_error_to_anthropic(status: int, data: bytes) -> bytes | None:
    """A Google-shaped error body in Anthropic's shape; None when ``data`` is not one."""
    error = _google_error(data)
    if error is None:
        return None
    kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
            429: "rate_limit_error", 503: "overloaded_error"}.get(status, "api_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": str(error.get("message") or "")}})


def google_error_body(status: int, message: str, reason: str | None = None,
                      metadata: Mapping[str, str] | None = None) -> bytes:
    """An error in Google's shape (``{"error": {code, message, status, details}}``), for
    clients of the gateway's own Google route; ``reason`` is Tollway's error code and
    ``metadata`` the rest of a denial (scope, limit, used, reset_at ...) as a
    ``google.rpc.ErrorInfo`` carries it (strings)."""
    error: JSON = {"code": status, "message": message, "status": RPC_STATUS.get(status, "UNKNOWN")}
    if reason:
        info: JSON = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "tollway"}
        if metadata:
            info["metadata"] = dict(metadata)
        error["details"] = [info]
    return orjson.dumps({"error": error})


def google_error_from(status: int, data: bytes) -> bytes:
    """Any error body (Google's, OpenAI's or Anthropic's shape, or text) in Google's shape."""
    if _google_error(data) is not None:
        return data
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, Mapping):
        return google_error_body(status, str(error.get("message") or ""), error.get("code") or error.get("type"),
                                 _flat(error, ""))
    return google_error_body(status, data[:500].decode("utf-8", "replace") or f"upstream answered {status}")


def _flat(fields: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """A Tollway error's other fields as ErrorInfo metadata: ``{"scope.level": "provider", ...}``."""
    out: dict[str, str] = {}
    for name, value in fields.items():
        if value is None or (not prefix and name in ("message", "type", "code", "param")):
            continue
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{name}."))
        else:
            out[prefix + name] = value if isinstance(value, str) else orjson.dumps(value).decode()
    return out


def _google_error(data: bytes) -> Mapping[str, Any] | None:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, Mapping) and "status" in error and isinstance(error.get("code"), int):
        return error
    return None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
