"""SSE parsing and encoding: wire rules, arbitrary chunk boundaries, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.providers.sse import SSEEvent, SSEParser, encode_event

ANTHROPIC_STREAM = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_1"}}\n\n'
    b"event: ping\r\n"
    b'data: {"type": "ping"}\r\n\r\n'
    b": keep-alive comment\n\n"
    b"event: content_block_delta\r"
    b'data: {"type":"content_block_delta","delta":{"text":"h\xc3\xa9llo"}}\r\r'
    b"data: line one\n"
    b"data: line two\n\n"
    b"data: [DONE]\n\n"
)
ANTHROPIC_EVENTS = [
    SSEEvent("message_start", b'{"type":"message_start","message":{"id":"msg_1"}}'),
    SSEEvent("ping", b'{"type": "ping"}'),
    SSEEvent("content_block_delta", b'{"type":"content_block_delta","delta":{"text":"h\xc3\xa9llo"}}'),
    SSEEvent(None, b"line one\nline two"),
    SSEEvent(None, b"[DONE]"),
]


def parse_all(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


@pytest.mark.parametrize(("stream", "expected"), [
    (b"data: hello\n\n", [SSEEvent(None, b"hello")]),
    (b"event: done\ndata: {}\n\n", [SSEEvent("done", b"{}")]),
    (b"data:no-space\n\n", [SSEEvent(None, b"no-space")]),
    (b"data:  two spaces\n\n", [SSEEvent(None, b" two spaces")]),
    (b"data: a\ndata: b\ndata: c\n\n", [SSEEvent(None, b"a\nb\nc")]),
    (b"data: a\r\n\r\n", [SSEEvent(None, b"a")]),
    (b"data: a\r\rdata: b\r\r", [SSEEvent(None, b"a"), SSEEvent(None, b"b")]),
    (b": comment only\n\n", []),
    (b"event: lonely\n\n", []),
    (b"id: 7\nretry: 100\ndata: x\n\n", [SSEEvent(None, b"x")]),
    (b"data\n\n", [SSEEvent(None, b"")]),
    (b"\n\n\ndata: after blanks\n\n", [SSEEvent(None, b"after blanks")]),
    (b"\xef\xbb\xbfdata: bom\n\n", [SSEEvent(None, b"bom")]),
    (b"data: incomplete\n", []),
    (b"data: a: b: c\n\n", [SSEEvent(None, b"a: b: c")]),
])
def test_parser_follows_the_sse_line_rules(stream: bytes, expected: list[SSEEvent]) -> None:
    assert parse_all([stream]) == expected


def test_whole_stream_parses_to_the_expected_events() -> None:
    assert parse_all([ANTHROPIC_STREAM]) == ANTHROPIC_EVENTS


def test_every_two_way_split_gives_the_same_events() -> None:
    for cut in range(len(ANTHROPIC_STREAM) + 1):
        assert parse_all([ANTHROPIC_STREAM[:cut], ANTHROPIC_STREAM[cut:]]) == ANTHROPIC_EVENTS, cut


def test_byte_by_byte_feeding_gives_the_same_events() -> None:
    assert parse_all([ANTHROPIC_STREAM[i:i + 1] for i in range(len(ANTHROPIC_STREAM))]) == ANTHROPIC_EVENTS


def test_bom_split_across_chunks_is_stripped() -> None:
    assert parse_all([b"\xef", b"\xbb\xbfdata: x\n\n"]) == [SSEEvent(None, b"x")]


def test_long_line_in_many_small_chunks_is_kept_whole() -> None:
    payload = b"x" * 100_000
    chunks = [b"data: "] + [payload[i:i + 7] for i in range(0, len(payload), 7)] + [b"\n\n"]
    assert parse_all(chunks) == [SSEEvent(None, payload)]


def test_events_are_returned_as_soon_as_their_blank_line_arrives() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: one\n") == []
    assert parser.feed(b"\ndata: tw") == [SSEEvent(None, b"one")]
    assert parser.feed(b"o\n\n") == [SSEEvent(None, b"two")]


def test_flush_dispatches_an_unterminated_final_event_once() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: 1\n\nevent: end\ndata: last") == [SSEEvent(None, b"1")]
    assert parser.flush() == [SSEEvent("end", b"last")]
    assert parser.flush() == []


@pytest.mark.parametrize(("data", "event", "wire"), [
    (b'{"a":1}', None, b'data: {"a":1}\n\n'),
    (b"{}", "message_stop", b"event: message_stop\ndata: {}\n\n"),
    (b"a\nb", None, b"data: a\ndata: b\n\n"),
    (b"a\r\nb", "x", b"event: x\ndata: a\ndata: b\n\n"),
    (b"", None, b"data: \n\n"),
])
def test_encode_event_frames_data_and_event_name(data: bytes, event: str | None, wire: bytes) -> None:
    assert encode_event(data, event) == wire


_names = st.none() | st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=1, max_size=12)
_data = st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), min_size=1,
                 max_size=4).map(b"\n".join)
_events = st.lists(st.builds(SSEEvent, _names, _data), max_size=8)


@given(events=_events, newline=st.sampled_from([b"\n", b"\r\n", b"\r"]), cuts=st.lists(st.integers(0, 2_000)))
def test_encoded_events_survive_any_chunking_and_line_ending(events: list[SSEEvent], newline: bytes,
                                                             cuts: list[int]) -> None:
    stream = b"".join(encode_event(e.data, e.event) for e in events).replace(b"\n", newline)
    bounds = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *bounds], [*bounds, len(stream)], strict=True)]
    assert parse_all(chunks) == events
