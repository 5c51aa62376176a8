"""A chat completions stream as the Responses API's typed events, chunk by chunk.

`response.created` and `response.in_progress` open the stream; text opens a message item
(`output_item.added`, `content_part.added`, then `output_text.delta`s), each tool call a
function_call item (`function_call_arguments.delta`s); an item is closed (`….done`) when
the next begins or the stream ends, and `response.completed` (or `response.incomplete`
when the output was cut by the token cap) ends it with the whole response and its usage.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tollway.providers._chat_response_to_responses import (
    call_item,
    message_item,
    new_id,
    output_text_part,
    response_object,
)
from tollway.providers._translate_common import UpstreamStreamError
from tollway.providers.usage_extract import usage_from_openai
from tollway.usage import Usage

JSON = dict[str, Any]
Event = tuple[str, JSON]


@dataclass(slots=True)
class _Item:
    """The item being streamed: a message (``call_id`` None) or a function call."""

    item_id: str
    index: int
    text: str = ""
    call_id: str | None = None
    name: str = ""


class ChatStreamToResponses:
    """Translates one chat completions stream for a Responses API client."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._id = new_id("resp")
        self._created = int(time.time())
        self._sequence = 0
        self._started = False
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}  # chat tool-call index → its item
        self._output: list[JSON] = []
        self._finish: str | None = None
        self.usage: Usage | None = None

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        """The events for one parsed chat chunk."""
        if chunk.get("error"):
            raise UpstreamStreamError.from_body(chunk)
        events = self._start()
        if isinstance(chunk.get("usage"), Mapping):
            self.usage = usage_from_openai(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str) and delta["content"]:
                events += self._text(delta["content"])
            for call in delta.get("tool_calls") or ():
                events += self._call(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return events

    def finish(self) -> list[Event]:
        """The closing events: the open item's, then the whole response."""
        events = self._start() + self._close()
        response = response_object(self._id, self._model, self._created, "completed", self._output, self.usage,
                                   self._finish)
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return events + [self._event(kind, response=response)]

    def error_event(self, code: str, message: str) -> Event:
        """The `error` event that ends a broken stream."""
        return self._event("error", code=code, message=message, param=None)

    def _event(self, kind: str, **fields: Any) -> Event:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return kind, payload

    def _start(self) -> list[Event]:
        if self._started:
            return []
        self._started = True
        response = response_object(self._id, self._model, self._created, "in_progress", [], None)
        return [self._event("response.created", response=response),
                self._event("response.in_progress", response=response)]

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        item = self._open
        if item is None or item.call_id is not None:
            events += self._close()
            item = self._open = _Item(new_id("msg"), len(self._output))
            events.append(self._event("response.output_item.added", output_index=item.index,
                                      item=message_item(item.item_id, "in_progress", [])))
            events.append(self._event("response.content_part.added", item_id=item.item_id, output_index=item.index,
                                      content_index=0, part=output_text_part("")))
        item.text += text
        events.append(self._event("response.output_text.delta", item_id=item.item_id, output_index=item.index,
                                  content_index=0, delta=text, logprobs=[]))
        return events

    def _call(self, call: Mapping[str, Any]) -> list[Event]:
        index = call.get("index", 0)
        function = call.get("function") or {}
        events: list[Event] = []
        if index not in self._calls:
            events += self._close()
            item = self._open = _Item(new_id("fc"), len(self._output), call_id=call.get("id") or new_id("call"),
                                      name=function.get("name") or "")
            self._calls[index] = item
            events.append(self._event("response.output_item.added", output_index=item.index,
                                      item=call_item(item.item_id, "in_progress", item.call_id or "", item.name, "")))
        piece = function.get("arguments")
        if not isinstance(piece, str) or not piece:
            return events
        target = self._calls[index]
        target.text += piece
        events.append(self._event("response.function_call_arguments.delta", item_id=target.item_id,
                                  output_index=target.index, delta=piece))
        return events

    def _close(self) -> list[Event]:
        item, self._open = self._open, None
        if item is None:
            return []
        where = {"item_id": item.item_id, "output_index": item.index}
        if item.call_id is None:
            part = output_text_part(item.text)
            done = message_item(item.item_id, "completed", [part])
            events = [self._event("response.output_text.done", **where, content_index=0, text=item.text, logprobs=[]),
                      self._event("response.content_part.done", **where, content_index=0, part=part)]
        else:
            done = call_item(item.item_id, "completed", item.call_id, item.name, item.text)
            events = [self._event("response.function_call_arguments.done", **where, name=item.name,
                                  arguments=item.text)]
        self._output.append(done)
        return events + [self._event("response.output_item.done", output_index=item.index, item=done)]
