"""Anthropic routes of the mock upstream: `/v1/messages` (JSON and the real SSE event
sequence), `/v1/messages/count_tokens` and the Anthropic shape of `/v1/models`.

A forced `tool_choice` (`any`, or `tool` with a name) is answered with a call of that tool
whose input matches its schema; `thinking: {type: enabled}` is checked as Anthropic checks
it (budget ≥ 1,024 and below max_tokens, no forced tool, temperature 1) and answered with
a thinking block before the answer.

Usage follows Anthropic's semantics: `input_tokens` excludes the tokens read from cache,
which are reported as `cache_read_input_tokens` (prompt = input + cache read).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tollway.testing import mock_content as content
from tollway.testing.mock_http import MockCall, bearer_token, error_response, send_json, send_sse, sse_event

MODELS = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-3-5-haiku-latest")
"""Model ids listed by `GET /v1/models` with an `anthropic-version` header."""

_PING = sse_event(b"ping", {"type": "ping"})
_STOP = sse_event(b"message_stop", {"type": "message_stop"})
_TOOL_INPUT_PIECE = 8
_THINKING_TEXT = "Let me think about this."
_MIN_THINKING_BUDGET = 1024


def _error(status: int, message: str, type_: str | None = None) -> web.Response:
    return error_response("anthropic", status, message, type_)


def _check_headers(call: MockCall) -> web.Response | None:
    if not (call.header("x-api-key") or bearer_token(call)):
        return _error(401, "x-api-key header is required", "authentication_error")
    if not call.header("anthropic-version"):
        return _error(400, "anthropic-version: header is required", "invalid_request_error")
    return None


def _check_body(call: MockCall, required: tuple[str, ...]) -> web.Response | None:
    body = call.body
    if call.body_invalid or not isinstance(body, dict):
        return _error(400, "There was an issue with the JSON body of the request: expected a JSON object.")
    for name in required:
        if name not in body:
            return _error(400, f"{name}: Field required")
    if not isinstance(body["model"], str) or not body["model"]:
        return _error(400, "model: Input should be a valid string")
    if not isinstance(body["messages"], list) or not body["messages"]:
        return _error(400, "messages: at least one message is required")
    return None


@dataclass(slots=True, frozen=True)
class _Answer:
    """Everything a messages response says, computed once for JSON and stream alike."""

    number: int
    model: str
    count: int
    stop_reason: str
    input_tokens: int
    cache_read: int
    tool: dict[str, Any] | None
    thinking: bool

    @property
    def id(self) -> str:
        return f"msg_mock{self.number}"

    def usage(self, output_tokens: int) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": self.cache_read, "output_tokens": output_tokens,
                "service_tier": "standard"}

    def message(self, content_blocks: list[dict[str, Any]], stop_reason: str | None, output_tokens: int) -> dict[str, Any]:
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": content_blocks, "stop_reason": stop_reason, "stop_sequence": None,
                "usage": self.usage(output_tokens)}


async def messages(call: MockCall) -> web.StreamResponse:
    """`POST /v1/messages`, JSON or the real SSE event sequence."""
    problem = _check_headers(call)
    return problem if problem is not None else await authenticated_messages(call)


async def authenticated_messages(call: MockCall) -> web.StreamResponse:
    """`messages` past its header checks (Vertex AI's route authenticates its own way)."""
    problem = _check_body(call, ("model", "messages", "max_tokens"))
    if problem is not None:
        return problem
    body: dict[str, Any] = call.body
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return _error(400, "max_tokens: Input should be greater than or equal to 1")
    problem = _thinking_problem(body)
    if problem is not None:
        return problem
    answer = _answer(call, body)
    headers = {"request-id": f"req_mock{answer.number}"}
    if body.get("stream") is True:
        return await send_sse(call, _message_events(answer), headers)
    blocks = [answer.tool] if answer.tool else [{"type": "text", "text": content.answer_text(answer.count)}]
    if answer.thinking:
        blocks.insert(0, {"type": "thinking", "thinking": _THINKING_TEXT, "signature": _signature(answer)})
    return await send_json(call, answer.message(blocks, answer.stop_reason, answer.count), headers)


def _forces_tool(body: dict[str, Any]) -> bool:
    choice = body.get("tool_choice")
    return isinstance(choice, dict) and choice.get("type") in ("any", "tool")


def _thinking_problem(body: dict[str, Any]) -> web.Response | None:
    """Anthropic's checks of an extended-thinking request."""
    thinking = body.get("thinking")
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
        return _error(400, "thinking: Input tag does not match any of the expected tags: 'enabled', 'disabled', "
                           "'adaptive'")
    if thinking["type"] != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < _MIN_THINKING_BUDGET:
        return _error(400, "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if budget >= body["max_tokens"]:
        return _error(400, "`max_tokens` must be greater than `thinking.budget_tokens`.")
    if _forces_tool(body):
        return _error(400, "Thinking may not be enabled when tool_choice forces tool use.")
    if body.get("temperature", 1) != 1:
        return _error(400, "`temperature` may only be set to 1 when thinking is enabled.")
    return _thinking_tool_turn_problem(body["messages"])


def _thinking_tool_turn_problem(messages: list[Any]) -> web.Response | None:
    """While thinking, the final assistant turn that called a tool must start with its thinking block."""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        blocks = message.get("content")
        if not isinstance(blocks, list) or not any(isinstance(b, dict) and b.get("type") == "tool_use" for b in blocks):
            return None
        first = blocks[0].get("type") if isinstance(blocks[0], dict) else None
        if first in ("thinking", "redacted_thinking"):
            return None
        return _error(400, f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                           f"`{first}`. When `thinking` is enabled, a final `assistant` message must start with a "
                           "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks).")
    return None


def _signature(answer: _Answer) -> str:
    return f"sig_mock{answer.number}"


def _answer(call: MockCall, body: dict[str, Any]) -> _Answer:
    settings = call.state.settings
    number = call.state.next_id()
    cap = None if settings.ignore_max_tokens else body["max_tokens"]
    count, capped = content.answer_tokens(cap, settings.completion_tokens)
    prompt = content.chat_prompt_tokens(body["messages"], body.get("system"))
    cache_read = content.cached_part(prompt, settings.cached_tokens)
    tool = _forced_tool_use(body, number) or _weather_tool_use(body, number)
    stop_reason = "tool_use" if tool else "max_tokens" if capped else "end_turn"
    thinking = isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled"
    return _Answer(number, body["model"], count, stop_reason, prompt - cache_read, cache_read, tool, thinking)


def _forced_tool_use(body: dict[str, Any], number: int) -> dict[str, Any] | None:
    """A tool_use block for the tool that tool_choice forces (the first custom one for `any`)."""
    tools = body.get("tools")
    if not _forces_tool(body) or not isinstance(tools, list):
        return None
    choice = body["tool_choice"]
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type", "custom") != "custom" or not isinstance(tool.get("name"), str):
            continue
        if choice["type"] == "any" or tool["name"] == choice.get("name"):
            return {"type": "tool_use", "id": f"toolu_mock{number}", "name": tool["name"],
                    "input": content.tool_arguments(tool.get("input_schema"))}
    return None


def _weather_tool_use(body: dict[str, Any], number: int) -> dict[str, Any] | None:
    """A tool_use block for the first custom tool when the last user turn asks about the weather."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or (isinstance(choice, dict) and choice.get("type") == "none"):
        return None
    if not content.asks_for_weather(body["messages"]):
        return None
    for tool in tools:
        if isinstance(tool, dict) and isinstance(tool.get("name"), str) and tool.get("type", "custom") == "custom":
            return {"type": "tool_use", "id": f"toolu_mock{number}", "name": tool["name"],
                    "input": content.tool_arguments(tool.get("input_schema"))}
    return None


def _message_events(answer: _Answer) -> Iterator[bytes]:
    """message_start, [thinking block], content_block_start, ping, deltas, content_block_stop,
    message_delta, message_stop."""
    start = answer.message([], None, min(answer.count, 1))
    yield sse_event(b"message_start", {"type": "message_start", "message": start})
    index = 0
    if answer.thinking:
        yield from _thinking_events(answer)
        index = 1
    if answer.tool:
        yield sse_event(b"content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": {**answer.tool, "input": {}}})
        yield _PING
        yield from _input_json_deltas(answer.tool["input"], index)
    else:
        yield sse_event(b"content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": {"type": "text", "text": ""}})
        yield _PING
        for word in content.answer_words(answer.count):
            yield sse_event(b"content_block_delta", {"type": "content_block_delta", "index": index,
                                                     "delta": {"type": "text_delta", "text": word}})
    yield _block_stop(index)
    usage = answer.usage(answer.count)
    del usage["service_tier"]
    yield sse_event(b"message_delta", {"type": "message_delta",
                                       "delta": {"stop_reason": answer.stop_reason, "stop_sequence": None},
                                       "usage": usage})
    yield _STOP


def _block_stop(index: int) -> bytes:
    return sse_event(b"content_block_stop", {"type": "content_block_stop", "index": index})


def _thinking_events(answer: _Answer) -> Iterator[bytes]:
    yield sse_event(b"content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
    yield sse_event(b"content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "thinking_delta", "thinking": _THINKING_TEXT}})
    yield sse_event(b"content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "signature_delta", "signature": _signature(answer)}})
    yield _block_stop(0)


def _input_json_deltas(tool_input: dict[str, Any], index: int) -> Iterator[bytes]:
    partial = orjson.dumps(tool_input).decode()
    for start in range(0, len(partial), _TOOL_INPUT_PIECE):
        yield sse_event(b"content_block_delta", {
            "type": "content_block_delta", "index": index,
            "delta": {"type": "input_json_delta", "partial_json": partial[start:start + _TOOL_INPUT_PIECE]}})


async def count_tokens(call: MockCall) -> web.StreamResponse:
    """`POST /v1/messages/count_tokens`: the prompt tokens a messages request would report."""
    problem = _check_headers(call)
    return problem if problem is not None else await authenticated_count_tokens(call)


async def authenticated_count_tokens(call: MockCall) -> web.StreamResponse:
    """`count_tokens` past its header checks."""
    problem = _check_body(call, ("model", "messages"))
    if problem is not None:
        return problem
    body: dict[str, Any] = call.body
    return await send_json(call, {"input_tokens": content.chat_prompt_tokens(body["messages"], body.get("system"))})


def _model(model_id: str) -> dict[str, Any]:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": "2025-01-01T00:00:00Z"}


async def list_models(call: MockCall) -> web.StreamResponse:
    """`GET /v1/models` in Anthropic's shape."""
    problem = _check_headers(call)
    if problem is not None:
        return problem
    return await send_json(call, {"data": [_model(m) for m in MODELS], "has_more": False,
                                  "first_id": MODELS[0], "last_id": MODELS[-1]})


async def retrieve_model(call: MockCall) -> web.StreamResponse:
    """`GET /v1/models/{model}` in Anthropic's shape: any id exists."""
    problem = _check_headers(call)
    if problem is not None:
        return problem
    return await send_json(call, _model(call.request.match_info["model"]))
