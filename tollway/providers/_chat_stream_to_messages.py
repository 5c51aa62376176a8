"""OpenAI ``chat.completion.chunk`` stream → Anthropic messages stream events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.providers._messages_request_to_chat import stop_reason
from tollway.providers._translate_common import (
    JSON,
    UpstreamStreamError,
    anthropic_usage,
)
from tollway.providers.usage_extract import usage_from_openai
from tollway.usage import ZERO_USAGE, Usage

StreamEvent = tuple[str, JSON]  # (SSE event name, data)


class ChatStreamToMessages:
    """Translates one OpenAI chat stream, chunk by chunk, for an Anthropic-speaking client.

    `feed` returns the events each parsed chunk completes (message_start first, then
    content blocks indexed from 0, opened and stopped one at a time). The end of the
    message — closing the open block, ``message_delta`` with stop_reason and usage,
    ``message_stop`` — comes from `finish`, called at ``[DONE]`` or when the upstream
    stream ends, because the usage chunk follows the finish_reason. A chunk carrying
    ``error`` raises `UpstreamStreamError`. ``message_start`` names the model the first
    chunk names (as the non-streamed answer does), ``model`` when it names none.
    """

    __slots__ = ("_finish_reason", "_finished", "_model", "_next_index", "_open", "_started", "_tool_blocks",
                 "_usage")

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._finished = False
        self._open: tuple[str, int] | None = None  # ("text" | "tool_use", block index) of the open block
        self._next_index = 0
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool call index → Anthropic block index
        self._finish_reason: str | None = None
        self._usage: Usage | None = None

    @property
    def usage(self) -> Usage | None:
        """Tokens from the upstream's usage chunk, once it has arrived."""
        return self._usage

    def feed(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        """Translate one parsed ``chat.completion.chunk``."""
        if chunk.get("error") is not None:
            raise UpstreamStreamError.from_body(chunk)
        if self._finished:
            return []
        if usage := chunk.get("usage"):
            self._usage = usage_from_openai(usage)
        if self._started:
            out = []
        elif chunk.get("model") or chunk.get("choices"):
            out = self._start(chunk.get("id"), chunk.get("model"))
        else:
            return []  # e.g. Azure's prompt_filter_results chunk: message_start waits for the model's name
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) == 0:
                self._choice_delta(choice, out)
        return out

    def finish(self) -> list[StreamEvent]:
        """Close the message: the open block, then message_delta and message_stop. Idempotent."""
        if self._finished:
            return []
        out = [] if self._started else self._start(None, None)
        self._finished = True
        self._close_block(out)
        usage = anthropic_usage(self._usage or ZERO_USAGE)
        reason = stop_reason(self._finish_reason, bool(self._tool_blocks))
        out.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
                                      "usage": usage}))
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def _start(self, upstream_id: object, upstream_model: object) -> list[StreamEvent]:
        self._started = True
        if isinstance(upstream_model, str) and upstream_model:
            self._model = upstream_model
        message: JSON = {"id": upstream_id if isinstance(upstream_id, str) and upstream_id else "msg_tollway",
                   "type": "message", "role": "assistant", "model": self._model, "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}
        return [("message_start", {"type": "message_start", "message": message})]

    def _choice_delta(self, choice: Mapping[str, Any], out: list[StreamEvent]) -> None:
        delta = choice.get("delta") or {}
        for text in (delta.get("content"), delta.get("refusal")):
            if text:
                self._text(text, out)
        for call in delta.get("tool_calls") or ():
            self._tool_call(call, out)
        if choice.get("finish_reason"):
            self._finish_reason = choice["finish_reason"]

    def _text(self, text: str, out: list[StreamEvent]) -> None:
        if self._open is not None and self._open[0] == "text":
            index = self._open[1]
        else:
            index = self._open_block({"type": "text", "text": ""}, out)
        out.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                            "delta": {"type": "text_delta", "text": text}}))

    def _tool_call(self, call: Mapping[str, Any], out: list[StreamEvent]) -> None:
        position = call.get("index", 0)
        function = call.get("function") or {}
        index = self._tool_blocks.get(position)
        if index is None:
            block: JSON = {"type": "tool_use", "id": call.get("id") or f"toolu_{position}",
                     "name": function.get("name") or "", "input": {}}
            index = self._tool_blocks[position] = self._open_block(block, out)
        if arguments := function.get("arguments"):
            out.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                "delta": {"type": "input_json_delta", "partial_json": arguments}}))

    def _open_block(self, block: JSON, out: list[StreamEvent]) -> int:
        self._close_block(out)
        index = self._next_index
        self._next_index += 1
        self._open = (block["type"], index)
        out.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        return index

    def _close_block(self, out: list[StreamEvent]) -> None:
        if self._open is not None:
            out.append(("content_block_stop", {"type": "content_block_stop", "index": self._open[1]}))
            self._open = None
