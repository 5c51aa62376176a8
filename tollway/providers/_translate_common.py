"""Pieces shared by the OpenAI ⇄ Anthropic translators: errors, reason maps, usage shapes."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from tollway.usage import Usage

JSON = dict[str, Any]

# Anthropic stop_reason → OpenAI finish_reason.
FINISH_REASON: Mapping[str, str] = MappingProxyType({
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
})

# OpenAI finish_reason → Anthropic stop_reason.
STOP_REASON: Mapping[str, str] = MappingProxyType({
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
})


# The tool an OpenAI ``response_format`` becomes on an Anthropic model: Claude is made to
# call it, and its input is the JSON answer. The answer is recognised by this name, so
# clients may not name a tool so (an unlikely name, to spare them).
FORMAT_TOOL = "tollway_json_answer"


class TranslationError(ValueError):
    """A request or response that cannot be expressed in the other API; the message says why.

    ``field`` names the request field at fault, when there is one (the 400's ``param``).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UpstreamStreamError(Exception):
    """The upstream sent an error in the middle of a stream.

    The translators raise it instead of yielding a chunk; the relay turns it into an SSE
    error event in the client's API shape with `openai_body()` or `anthropic_body()`.
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> UpstreamStreamError:
        """Build from either API's error body (``{"error": {"type", "message"}}``)."""
        error = body.get("error")
        if not isinstance(error, Mapping):
            return cls("api_error", str(error) if error else "upstream stream error")
        return cls(str(error.get("type") or error.get("code") or "api_error"), str(error.get("message") or ""))

    def openai_body(self) -> JSON:
        return {"error": {"message": self.message, "type": self.error_type, "param": None, "code": self.error_type}}

    def anthropic_body(self) -> JSON:
        return {"type": "error", "error": {"type": self.error_type, "message": self.message}}


def openai_usage(usage: Usage) -> JSON:
    """OpenAI's ``usage`` object for a `Usage` (prompt tokens include cached ones)."""
    details: JSON = {"cached_tokens": usage.cached_tokens}
    if usage.cache_write_tokens:
        details["cache_write_tokens"] = usage.cache_write_tokens
    out: JSON = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": details,
    }
    if usage.reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def anthropic_usage(usage: Usage) -> JSON:
    """Anthropic's ``usage`` object for a `Usage` (input tokens exclude cache reads/writes)."""
    return {
        "input_tokens": max(usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens, 0),
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
    }


def parse_arguments(raw: object, where: str) -> JSON:
    """A tool call's JSON ``arguments`` string as the object Anthropic wants for ``input``."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if raw is None or raw == "":
        return {}
    try:
        value = orjson.loads(raw) if isinstance(raw, str | bytes) else None
    except orjson.JSONDecodeError as exc:
        raise TranslationError(f"{where}: tool call arguments are not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise TranslationError(f"{where}: tool call arguments must be a JSON object")
    return value


def dumps_str(value: object) -> str:
    """Serialise to a JSON string (what OpenAI puts in ``arguments``)."""
    return orjson.dumps(value).decode()


def text_of(content: object) -> str:
    """The text of a content value that is a string or a list of text parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text") or part.get("refusal") or "" for part in content
                       if isinstance(part, Mapping) and part.get("type") in ("text", "refusal", None))
    return ""
