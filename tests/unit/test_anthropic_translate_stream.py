"""OpenAI chat ⇄ Anthropic messages: streams.

Translated streams are encoded as SSE and read by the real SDKs (over an in-memory
transport, strict response validation on), so event order, indices and field names are
checked by the code that clients run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import anthropic
import httpx2
import openai
import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from tollway.providers.anthropic_translate import ChatStreamToMessages, MessagesStreamToChat, UpstreamStreamError
from tollway.providers.sse import SSEParser, encode_event
from tollway.usage import Usage

STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


def _start(id_: str, usage: dict[str, int]) -> dict[str, Any]:
    return {"type": "message_start", "message": {"id": id_, "type": "message", "role": "assistant", "model": "claude",
                                                 "content": [], "stop_reason": None, "stop_sequence": None,
                                                 "usage": usage}}


def _delta(index: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}}


ANTHROPIC_EVENTS: list[dict[str, Any]] = [
    _start("msg_1", {"input_tokens": 20, "output_tokens": 1, "cache_read_input_tokens": 100,
                     "cache_creation_input_tokens": 5}),
    {"type": "ping"},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    _delta(0, "text_delta", text="Hello"),
    _delta(0, "text_delta", text=", world"),
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1,
     "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}},
    _delta(1, "input_json_delta", partial_json=""),
    _delta(1, "input_json_delta", partial_json='{"city": "New '),
    _delta(1, "input_json_delta", partial_json='York"}'),
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2,
     "content_block": {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}},
    _delta(2, "input_json_delta", partial_json='{"tz":"CET"}'),
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 42}},
    {"type": "message_stop"},
]


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt", "choices": choices,
            **extra}


def _call(index: int, arguments: str, id_: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id_:
        call |= {"id": id_, "type": "function"}
        call["function"]["name"] = name
    return {"tool_calls": [call]}


OPENAI_CHUNKS: list[dict[str, Any]] = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "Hel"}),
    _chunk({"content": "lo"}),
    _chunk(_call(0, "", "call_1", "get_weather")),
    _chunk(_call(0, '{"city":')),
    _chunk(_call(0, '"Paris"}')),
    _chunk(_call(1, "{}", "call_2", "get_time")),
    _chunk({}, "tool_calls"),
    _chunk(None, usage={"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
                        "prompt_tokens_details": {"cached_tokens": 10}}),
]


def _serve(body: bytes) -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})
    return httpx2.Client(transport=httpx2.MockTransport(handler))


def sdk_final_message(events: Iterable[tuple[str, dict[str, Any]]]) -> Message:
    """What the Anthropic SDK's stream helper builds from these events sent as SSE."""
    body = b"".join(encode_event(orjson.dumps(data), name) for name, data in events)
    client = anthropic.Anthropic(api_key="k", base_url="http://upstream", http_client=_serve(body),
                                 _strict_response_validation=True)
    with client.messages.stream(model="claude", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as stream:
        return stream.get_final_message()


def sdk_final_completion(chunks: Iterable[dict[str, Any]]) -> ChatCompletion:
    """What the OpenAI SDK's stream helper builds from these chunks sent as SSE."""
    body = b"".join(encode_event(orjson.dumps(chunk)) for chunk in chunks) + encode_event(b"[DONE]")
    client = openai.OpenAI(api_key="k", base_url="http://upstream", http_client=_serve(body),
                           _strict_response_validation=True)
    with client.chat.completions.stream(model="gpt", messages=[{"role": "user", "content": "hi"}],
                                        stream_options={"include_usage": True}) as stream:
        return stream.get_final_completion()


def to_chat(events: Iterable[dict[str, Any]], include_usage: bool = True) -> list[dict[str, Any]]:
    translator = MessagesStreamToChat("alias", include_usage, created=1_700_000_000)
    return [chunk for event in events for chunk in translator.feed(event["type"], event)]


def to_messages(chunks: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    translator = ChatStreamToMessages("alias")
    return [event for chunk in chunks for event in translator.feed(chunk)] + translator.finish()


# ---- Anthropic stream → chat chunks ------------------------------------------------------

def test_anthropic_stream_becomes_chunks_the_openai_sdk_assembles() -> None:
    chunks = to_chat(ANTHROPIC_EVENTS)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    completion = sdk_final_completion(chunks)
    choice = completion.choices[0]
    assert completion.id == "msg_1" and completion.model == "claude"  # the answering model, as unstreamed
    assert choice.message.content == "Hello, world"
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.model_dump()["tool_calls"]
    assert [(c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"])) for c in calls] == [
        ("toolu_1", "get_weather", {"city": "New York"}), ("toolu_2", "get_time", {"tz": "CET"})]
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (125, 42)
    assert completion.usage.prompt_tokens_details.cached_tokens == 100


def test_usage_is_known_from_message_start_and_updated_by_message_delta() -> None:
    translator = MessagesStreamToChat("m", include_usage=False)
    assert translator.usage is None
    translator.feed("message_start", ANTHROPIC_EVENTS[0])
    assert translator.usage == Usage(prompt_tokens=125, completion_tokens=1, cached_tokens=100, cache_write_tokens=5)
    for event in ANTHROPIC_EVENTS[1:]:
        translator.feed(event["type"], event)
    assert translator.usage == Usage(prompt_tokens=125, completion_tokens=42, cached_tokens=100, cache_write_tokens=5)


def test_without_include_usage_no_usage_chunk_is_sent() -> None:
    chunks = to_chat(ANTHROPIC_EVENTS, include_usage=False)
    assert all(chunk["choices"] for chunk in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]] == ["tool_calls"]


def test_usage_chunk_comes_last_with_no_choices() -> None:
    last = to_chat(ANTHROPIC_EVENTS)[-1]
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 167
    ChatCompletionChunk.model_validate(last)


def test_message_stop_without_message_delta_still_finishes() -> None:
    chunks = to_chat([ANTHROPIC_EVENTS[0], ANTHROPIC_EVENTS[2], ANTHROPIC_EVENTS[3], {"type": "message_stop"}])
    assert sdk_final_completion(chunks).choices[0].finish_reason == "stop"


def test_anthropic_error_event_raises_with_type_and_message() -> None:
    translator = MessagesStreamToChat("m", include_usage=True)
    translator.feed("message_start", ANTHROPIC_EVENTS[0])
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(UpstreamStreamError) as caught:
        translator.feed("error", error)
    assert (caught.value.error_type, caught.value.message) == ("overloaded_error", "Overloaded")
    assert caught.value.openai_body()["error"]["type"] == "overloaded_error"
    assert caught.value.anthropic_body() == error


def test_anthropic_events_parsed_from_sse_bytes_translate_the_same() -> None:
    wire = b"".join(encode_event(orjson.dumps(e), e["type"]) for e in ANTHROPIC_EVENTS)
    translator = MessagesStreamToChat("alias", True, created=1_700_000_000)
    parser = SSEParser()
    chunks = [c for i in range(0, len(wire), 13) for ev in parser.feed(wire[i:i + 13])
              for c in translator.feed(ev.event, orjson.loads(ev.data))]
    assert chunks == to_chat(ANTHROPIC_EVENTS)


# ---- chat chunks → Anthropic stream ------------------------------------------------------

def test_chat_stream_becomes_events_the_anthropic_sdk_assembles() -> None:
    events = to_messages(OPENAI_CHUNKS)
    for name, data in events:
        assert STREAM_EVENT.validate_python(data).type == name
    message = sdk_final_message(events)
    assert message.id == "chatcmpl-1" and message.model == "gpt"  # the answering model, as unstreamed
    assert [block.model_dump(exclude_none=True) for block in message.content] == [
        {"type": "text", "text": "Hello"},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
    ]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens, message.usage.cache_read_input_tokens) == (20, 12, 10)


def test_blocks_open_and_close_in_order_from_index_zero() -> None:
    events = to_messages(OPENAI_CHUNKS)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    opened = [data["index"] for name, data in events if name == "content_block_start"]
    closed = [data["index"] for name, data in events if name == "content_block_stop"]
    assert opened == closed == [0, 1, 2]
    starts = [i for i, name in enumerate(names) if name == "content_block_start"]
    stops = [i for i, name in enumerate(names) if name == "content_block_stop"]
    assert all(start < stop < next_start for start, stop, next_start in zip(starts, stops, [*starts[1:], len(names)],
                                                                            strict=True))


def test_finish_is_idempotent_and_later_chunks_are_ignored() -> None:
    translator = ChatStreamToMessages("m")
    for chunk in OPENAI_CHUNKS:
        translator.feed(chunk)
    assert translator.finish()[-1][0] == "message_stop"
    assert translator.finish() == []
    assert translator.feed(_chunk({"content": "late"})) == []
    assert translator.usage == Usage(prompt_tokens=30, completion_tokens=12, cached_tokens=10)


def test_an_empty_upstream_stream_still_yields_a_valid_message() -> None:
    events = ChatStreamToMessages("m").finish()
    assert [name for name, _ in events] == ["message_start", "message_delta", "message_stop"]
    message = sdk_final_message(events)
    assert message.content == [] and message.stop_reason == "end_turn"


def test_length_finish_without_usage_chunk_maps_to_max_tokens() -> None:
    events = to_messages([_chunk({"role": "assistant", "content": "cut"}), _chunk({}, "length")])
    message = sdk_final_message(events)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 0


def test_openai_error_chunk_raises() -> None:
    translator = ChatStreamToMessages("m")
    translator.feed(OPENAI_CHUNKS[0])
    with pytest.raises(UpstreamStreamError) as caught:
        translator.feed({"error": {"message": "Rate limit", "type": "rate_limit_error", "code": "429"}})
    assert caught.value.anthropic_body() == {"type": "error", "error": {"type": "rate_limit_error",
                                                                        "message": "Rate limit"}}


# ---- both ways ---------------------------------------------------------------------------

def test_anthropic_stream_survives_a_round_trip_through_chat_chunks() -> None:
    original = sdk_final_message((event["type"], event) for event in ANTHROPIC_EVENTS)
    round_tripped = sdk_final_message(to_messages(to_chat(ANTHROPIC_EVENTS)))
    assert round_tripped.model_dump(exclude={"model"}) == original.model_dump(exclude={"model"})


def test_chat_stream_survives_a_round_trip_through_anthropic_events() -> None:
    original = sdk_final_completion(OPENAI_CHUNKS)
    events = to_messages(OPENAI_CHUNKS)
    translator = MessagesStreamToChat("gpt", include_usage=True, created=1)
    round_tripped = sdk_final_completion(c for name, data in events for c in translator.feed(name, data))
    assert round_tripped.choices[0].message.model_dump() == original.choices[0].message.model_dump()
    assert round_tripped.choices[0].finish_reason == original.choices[0].finish_reason
    assert round_tripped.usage == original.usage


_pieces = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(text=_pieces, city=st.text(max_size=20), cut=st.integers(0, 40))
def test_any_split_of_text_and_arguments_assembles_to_the_same_message(text: list[str], city: str, cut: int) -> None:
    arguments = orjson.dumps({"city": city}).decode()
    chunks = [_chunk({"role": "assistant", "content": ""}), *(_chunk({"content": t}) for t in text),
              _chunk(_call(0, arguments[:cut], "call_9", "get_weather")), _chunk(_call(0, arguments[cut:])),
              _chunk({}, "tool_calls")]
    message = sdk_final_message(to_messages(chunks))
    assert [block.model_dump(exclude_none=True) for block in message.content] == [
        {"type": "text", "text": "".join(text)},
        {"type": "tool_use", "id": "call_9", "name": "get_weather", "input": {"city": city}}]
    completion = sdk_final_completion(to_chat(e for _, e in to_messages(chunks)))
    assert completion.choices[0].message.content == "".join(text)
