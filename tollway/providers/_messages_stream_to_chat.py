"""Anthropic messages stream events → OpenAI ``chat.completion.chunk`` dicts."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tollway.providers._translate_common import (
    FINISH_REASON,
    FORMAT_TOOL,
    JSON,
    UpstreamStreamError,
    dumps_str,
    openai_usage,
)
from tollway.providers.usage_extract import usage_from_anthropic
from tollway.usage import ZERO_USAGE, Usage


class MessagesStreamToChat:
    """Translates one Anthropic stream, event by event, for an OpenAI-speaking client.

    Feed each parsed SSE event; send the chunks it returns. The first chunk carries the
    assistant role, text and tool-call deltas follow, ``message_delta`` yields the
    finish_reason chunk, and ``message_stop`` yields the usage chunk (``choices: []``)
    when the client asked for ``stream_options.include_usage``. An ``error`` event raises
    `UpstreamStreamError`: the relay sends it to the client as an SSE error event.

    ``model`` is reported until ``message_start`` names the model that answers (as the
    non-streamed answer does). A call of `FORMAT_TOOL` (how ``response_format`` reaches
    Claude) is streamed as the message content, not as a tool call.
    """

    __slots__ = ("_answer_blocks", "_created", "_finished", "_id", "_include_usage", "_model", "_raw_usage",
                 "_tool_index", "_usage")

    def __init__(self, model: str, include_usage: bool, *, created: int | None = None) -> None:
        self._model = model
        self._answer_blocks: set[int] = set()  # content block indexes of FORMAT_TOOL calls
        self._include_usage = include_usage
        self._created = int(time.time()) if created is None else created
        self._id = ""
        self._tool_index: dict[int, int] = {}  # Anthropic content block index → OpenAI tool call index
        self._raw_usage: dict[str, Any] = {}  # message_start usage, overlaid by message_delta's totals
        self._usage: Usage | None = None
        self._finished = False

    @property
    def usage(self) -> Usage | None:
        """Tokens so far: input from message_start, output from the latest message_delta."""
        return self._usage

    def feed(self, event: str | None, data: Mapping[str, Any]) -> list[JSON]:
        """Translate one event (its SSE name and its parsed data) into zero or more chunks."""
        match data.get("type") or event:
            case "message_start":
                return self._on_message_start(data.get("message") or {})
            case "content_block_start":
                return self._on_block_start(data.get("index", 0), data.get("content_block") or {})
            case "content_block_delta":
                return self._on_block_delta(data.get("index", 0), data.get("delta") or {})
            case "message_delta":
                return self._on_message_delta(data)
            case "message_stop":
                return self._on_message_stop()
            case "error":
                raise UpstreamStreamError.from_body(data)
            case _:  # ping, content_block_stop, and event types added later
                return []

    def _on_message_start(self, message: Mapping[str, Any]) -> list[JSON]:
        self._id = message.get("id") or ""
        if isinstance(model := message.get("model"), str) and model:
            self._model = model
        self._merge_usage(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_block_start(self, index: int, block: Mapping[str, Any]) -> list[JSON]:
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return [self._chunk({"content": text})] if text else []
        if kind != "tool_use":
            return []  # thinking and server-tool blocks have no chat equivalent
        if block.get("name") == FORMAT_TOOL:
            self._answer_blocks.add(index)
            return [self._chunk({"content": dumps_str(block["input"])})] if block.get("input") else []
        position = self._tool_index[index] = len(self._tool_index)
        arguments = dumps_str(block["input"]) if block.get("input") else ""
        call = {"index": position, "id": block.get("id"), "type": "function",
                "function": {"name": block.get("name"), "arguments": arguments}}
        return [self._chunk({"tool_calls": [call]})]

    def _on_block_delta(self, index: int, delta: Mapping[str, Any]) -> list[JSON]:
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [self._chunk({"content": text})] if text else []
        if kind == "input_json_delta" and index in self._answer_blocks:
            piece = delta.get("partial_json")
            return [self._chunk({"content": piece})] if piece else []
        if kind == "input_json_delta":
            position = self._tool_index.get(index)
            piece = delta.get("partial_json")
            if position is None or not piece:
                return []
            return [self._chunk({"tool_calls": [{"index": position, "function": {"arguments": piece}}]})]
        return []

    def _on_message_delta(self, data: Mapping[str, Any]) -> list[JSON]:
        self._merge_usage(data.get("usage"))
        stop_reason = (data.get("delta") or {}).get("stop_reason")
        if stop_reason is None or self._finished:
            return []
        self._finished = True
        if stop_reason == "tool_use" and self._answer_blocks and not self._tool_index:
            stop_reason = "end_turn"  # only the format tool was called: the answer is complete
        return [self._chunk({}, FINISH_REASON.get(stop_reason, "stop"))]

    def _on_message_stop(self) -> list[JSON]:
        out = []
        if not self._finished:
            self._finished = True
            out.append(self._chunk({}, "stop"))
        if self._include_usage:
            out.append({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                        "model": self._model, "choices": [], "usage": openai_usage(self._usage or ZERO_USAGE)})
        return out

    def _merge_usage(self, usage: object) -> None:
        if isinstance(usage, Mapping):
            # message_delta counts are cumulative and override; absent ones keep message_start's
            self._raw_usage.update((k, v) for k, v in usage.items() if v is not None)
            self._usage = usage_from_anthropic(self._raw_usage)

    def _chunk(self, delta: JSON, finish_reason: str | None = None) -> JSON:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
