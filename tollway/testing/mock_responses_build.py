"""What the mock's Responses API answers: the response object, its output items and the
typed SSE events of a stream, built from a request body. Pure functions, no I/O.

Content follows `mock_content`'s rules: the input counts like chat messages (the
`instructions` as one more message), the answer is `tok0 tok1 ...`, a question about the
weather with a function tool gets a call of that tool, a `json_schema` text format gets a
JSON object of the schema's required fields, and a request with `reasoning.effort` (other
than none/minimal) spends `REASONING_TOKENS` more output tokens on a reasoning item.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from tollway.testing import mock_content as content
from tollway.testing.mock_http import sse_event

REASONING_TOKENS = 8
_ARGUMENT_PIECE = 8
JSON = dict[str, Any]


def input_messages(body: JSON) -> list[JSON]:
    """The request's `input` as chat-like messages (for token counts and the weather rule)."""
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    messages: list[JSON] = []
    for item in raw if isinstance(raw, list) else ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call_output":
            messages.append({"role": "tool", "content": str(item.get("output") or "")})
        elif item.get("type") == "function_call":
            messages.append({"role": "assistant", "content": str(item.get("arguments") or "")})
        elif isinstance(item.get("role"), str):
            messages.append({"role": item["role"], "content": _texts(item.get("content"))})
    return messages


def _texts(value: Any) -> str | list[JSON]:
    if isinstance(value, str):
        return value
    return [{"type": "text", "text": part["text"]} for part in value or ()
            if isinstance(part, dict) and isinstance(part.get("text"), str)]


def input_items(body: JSON, number: int) -> list[JSON]:
    """The request's input as the items `GET /v1/responses/{id}/input_items` lists."""
    raw = body.get("input")
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    items = []
    for index, item in enumerate(raw if isinstance(raw, list) else ()):
        if not isinstance(item, dict):
            continue
        entry = dict(item)
        entry.setdefault("type", "message")
        if entry["type"] == "message" and isinstance(entry.get("content"), str):
            entry["content"] = [{"type": "input_text", "text": entry["content"]}]
        entry.setdefault("id", f"msg_mock{number}_{index}")
        items.append(entry)
    return items


@dataclass(slots=True)
class Answer:
    """Everything one response says, computed once for JSON and stream alike."""

    number: int
    body: JSON
    input_tokens: int
    cached_tokens: int
    text: str | None
    text_tokens: int
    capped: bool
    call: JSON | None
    reasoning: bool
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def id(self) -> str:
        return f"resp_mock{self.number:08d}"

    @property
    def output_tokens(self) -> int:
        return self.text_tokens + (REASONING_TOKENS if self.reasoning else 0)

    def usage(self) -> JSON:
        return {"input_tokens": self.input_tokens, "input_tokens_details": {"cached_tokens": self.cached_tokens},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": REASONING_TOKENS if self.reasoning else 0},
                "total_tokens": self.input_tokens + self.output_tokens}

    def output(self) -> list[JSON]:
        items: list[JSON] = []
        if self.reasoning:
            items.append(reasoning_item(self))
        if self.call is not None:
            items.append({**self.call, "status": "completed"})
        else:
            items.append(message_item(self, self.text or "", "completed"))
        return items

    def response(self, status: str, output: list[JSON] | None, usage: JSON | None) -> JSON:
        body = self.body
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "background": bool(body.get("background")), "error": None, "incomplete_details": incomplete,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "model": body.get("model"), "output": output if output is not None else [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
            "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0), "truncation": "disabled", "usage": usage,
            "user": body.get("user"), "metadata": body.get("metadata") or {},
        }

    def final(self) -> JSON:
        return self.response("incomplete" if self.capped else "completed", self.output(), self.usage())


def answer(body: JSON, number: int, completion_tokens: int, cached_setting: int, extra_input: int) -> Answer:
    """The answer to a create request; ``extra_input`` counts a previous response's turns."""
    messages = input_messages(body)
    instructions = body.get("instructions")
    prompt = content.chat_prompt_tokens(messages, instructions if isinstance(instructions, str) else None)
    prompt += extra_input
    count, capped = content.answer_tokens(body.get("max_output_tokens"), completion_tokens)
    call = _weather_call(body, messages, number)
    text = None if call else _text(body, count)
    if call is not None:
        capped = False
    effort = (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
    return Answer(number, body, prompt, content.cached_part(prompt, cached_setting), text,
                  count if call is None else content.text_tokens(call["arguments"]), capped, call,
                  effort not in (None, "none", "minimal"))


def _text(body: JSON, count: int) -> str:
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return orjson.dumps(content.tool_arguments(fmt.get("schema"))).decode()
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return '{"answer": "mock"}'
    return content.answer_text(count)


def _weather_call(body: JSON, messages: list[JSON], number: int) -> JSON | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or body.get("tool_choice") == "none" or not content.asks_for_weather(messages):
        return None
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("name"), str):
            arguments = orjson.dumps(content.tool_arguments(tool.get("parameters"))).decode()
            return {"id": f"fc_mock{number}", "type": "function_call", "call_id": f"call_mock{number}",
                    "name": tool["name"], "arguments": arguments}
    return None


def message_item(answer_: Answer, text: str, status: str) -> JSON:
    parts = [output_text(text)] if status == "completed" else []
    return {"id": f"msg_mock{answer_.number}", "type": "message", "status": status, "role": "assistant",
            "content": parts}


def output_text(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_item(answer_: Answer) -> JSON:
    return {"id": f"rs_mock{answer_.number}", "type": "reasoning", "summary": []}


class _Events:
    """Numbers the events of one stream (`sequence_number`) and encodes them."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._next, **fields}
        self._next += 1
        return sse_event(kind.encode(), payload)


def stream_events(answer_: Answer) -> Iterator[bytes]:
    """created, in_progress, the items with their deltas, then completed (or incomplete)."""
    event = _Events()
    yield event("response.created", response=answer_.response("in_progress", None, None))
    yield event("response.in_progress", response=answer_.response("in_progress", None, None))
    index = 0
    if answer_.reasoning:
        item = reasoning_item(answer_)
        yield event("response.output_item.added", output_index=index, item=item)
        yield event("response.output_item.done", output_index=index, item=item)
        index += 1
    if answer_.call is not None:
        yield from _call_events(event, answer_.call, index)
    else:
        yield from _message_events(event, answer_, index)
    final = answer_.final()
    yield event("response.incomplete" if answer_.capped else "response.completed", response=final)


def _message_events(event: _Events, answer_: Answer, index: int) -> Iterator[bytes]:
    item_id = f"msg_mock{answer_.number}"
    text = answer_.text or ""
    where = {"item_id": item_id, "output_index": index, "content_index": 0}
    yield event("response.output_item.added", output_index=index, item=message_item(answer_, "", "in_progress"))
    yield event("response.content_part.added", **where, part=output_text(""))
    for piece in _pieces(answer_, text):
        yield event("response.output_text.delta", **where, delta=piece, logprobs=[])
    yield event("response.output_text.done", **where, text=text, logprobs=[])
    yield event("response.content_part.done", **where, part=output_text(text))
    yield event("response.output_item.done", output_index=index, item=message_item(answer_, text, "completed"))


def _pieces(answer_: Answer, text: str) -> list[str]:
    if text.startswith("{"):  # structured output: cut the JSON into pieces
        return [text[i:i + _ARGUMENT_PIECE] for i in range(0, len(text), _ARGUMENT_PIECE)]
    return content.answer_words(answer_.text_tokens)


def _call_events(event: _Events, call: JSON, index: int) -> Iterator[bytes]:
    arguments = call["arguments"]
    yield event("response.output_item.added", output_index=index, item={**call, "arguments": "", "status": "in_progress"})
    for start in range(0, len(arguments), _ARGUMENT_PIECE):
        yield event("response.function_call_arguments.delta", item_id=call["id"], output_index=index,
                    delta=arguments[start:start + _ARGUMENT_PIECE])
    yield event("response.function_call_arguments.done", item_id=call["id"], output_index=index,
                name=call["name"], arguments=arguments)
    yield event("response.output_item.done", output_index=index, item={**call, "status": "completed"})
