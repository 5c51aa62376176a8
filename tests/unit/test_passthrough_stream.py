"""The OpenAI passthrough stream relays the provider's bytes exactly, wherever the chunks fall,
less the usage chunk the gateway asked for on the client's behalf."""

from __future__ import annotations

import itertools

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.providers.client import Api
from tollway.proxy.passthrough import OpenAIPassthrough
from tollway.proxy.request import parse_request
from tollway.usage import Usage


def _event(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _chunk(content: str | None, finish: str | None = None) -> dict:
    delta = {} if content is None else {"content": content}
    return {"id": "c1", "object": "chat.completion.chunk", "model": "m", "service_tier": "default",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": None}


CONTENT = [_event(_chunk(word)) for word in ("Hé", " ✓ wörld", " ", "\\n\\n", " data: [DONE]")]
FINISH = _event(_chunk(None, "stop"))
USAGE = _event({"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [],
                "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}})
DONE = b"data: [DONE]\n\n"
STREAM = b"".join(CONTENT) + FINISH + USAGE + DONE


def _relay(stream: bytes, cuts: list[int], wants_usage: bool) -> tuple[bytes, Usage | None]:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    if wants_usage:
        body["stream_options"] = {"include_usage": True}
    converter = OpenAIPassthrough(Api.CHAT).stream(parse_request(Api.CHAT, orjson.dumps(body)), "gpt-4o-mini")
    edges = [0, *sorted(set(cuts)), len(stream)]
    out = b"".join(converter.feed(stream[a:b]) for a, b in itertools.pairwise(edges) if b > a)
    return out + converter.finish(), converter.usage


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=40), st.booleans())
def test_stream_cut_anywhere_arrives_as_sent_less_the_gateways_usage_chunk(cuts: list[int], wants_usage: bool) -> None:
    out, usage = _relay(STREAM, cuts, wants_usage)
    assert out == (STREAM if wants_usage else STREAM.replace(USAGE, b""))
    assert usage == Usage(prompt_tokens=9, completion_tokens=5)


def test_every_single_cut_point_of_the_finish_and_usage_events() -> None:
    start = len(b"".join(CONTENT))
    for cut in range(start, len(STREAM)):
        out, _ = _relay(STREAM, [cut], wants_usage=False)
        assert out == STREAM.replace(USAGE, b""), cut


def test_crlf_line_ends_split_between_cr_and_lf_keep_every_event() -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    cut = crlf.index(b"\r\n\r\n", crlf.index(b'"stop"')) + 1  # between the \r and the \n
    out, usage = _relay(crlf, [cut], wants_usage=False)
    assert out == STREAM.replace(USAGE, b"")  # line ends normalised, every event intact
    assert usage is not None


def test_a_last_event_without_its_blank_line_is_still_relayed() -> None:
    out, _ = _relay(STREAM[:-2], [10], wants_usage=False)
    assert out == STREAM.replace(USAGE, b"")[:-2]


def test_partial_event_is_held_until_it_completes() -> None:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    converter = OpenAIPassthrough(Api.CHAT).stream(parse_request(Api.CHAT, orjson.dumps(body)), "gpt-4o-mini")
    assert converter.feed(CONTENT[0][:10]) == b""
    assert converter.feed(CONTENT[0][10:] + CONTENT[1][:5]) == CONTENT[0]
    assert converter.feed(CONTENT[1][5:]) == CONTENT[1]
