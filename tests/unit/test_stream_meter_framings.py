"""The one stream meter in both framings it reads (SSE, AWS event-stream): however the
upstream cuts its stream into chunks, the client gets whole events only, exactly up to the
first one its reservation cannot cover, and the meter counts what it relayed; with room
to extend into, everything passes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from itertools import pairwise

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.governance.decisions import Decision, Denial
from tollway.providers.adapters.bedrock_eventstream import encode_event
from tollway.proxy.bedrock_metering import EventStreamMeter
from tollway.proxy.metering import StreamMeter


def _sse(text: str, crlf: bool) -> bytes:
    data = orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})
    return b"data: " + data + (b"\r\n\r\n" if crlf else b"\n\n")


def _sse_usage(crlf: bool) -> bytes:  # no output: the final usage chunk
    return b"data: " + orjson.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}) + (
        b"\r\n\r\n" if crlf else b"\n\n")


def _converse(text: str, crlf: bool) -> bytes:
    return encode_event("contentBlockDelta", orjson.dumps({"contentBlockIndex": 0, "delta": {"text": text}}))


def _converse_usage(crlf: bool) -> bytes:
    return encode_event("metadata", b'{"usage":{"inputTokens":3,"outputTokens":5,"totalTokens":8}}')


Event = Callable[[str, bool], bytes]
FRAMINGS: dict[str, tuple[type[StreamMeter], Event, Callable[[bool], bytes]]] = {
    "sse": (StreamMeter, _sse, _sse_usage),
    "aws-event-stream": (EventStreamMeter, _converse, _converse_usage),
}

_texts = st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=12), min_size=1, max_size=12)


async def _no_room(tokens: int) -> Denial | None:
    return Denial(Decision.BUDGET_EXCEEDED, "no room")


async def _room(tokens: int) -> Denial | None:
    return None


def _build(framing: str, texts: list[str], crlf: list[bool]) -> tuple[list[bytes], list[int]]:
    """The stream's events (its usage, without output, last) and each one's output bytes."""
    _, event, usage = FRAMINGS[framing]
    events = [event(text, crlf[i % len(crlf)]) for i, text in enumerate(texts)] + [usage(crlf[-1])]
    return events, [len(text.encode("utf-8")) for text in texts] + [0]


def _chunks(stream: bytes, cuts: list[int]) -> list[bytes]:
    at = sorted({cut % (len(stream) + 1) for cut in cuts} | {0, len(stream)})
    return [stream[a:b] for a, b in pairwise(at)]


async def _relay(meter: StreamMeter, chunks: list[bytes]) -> bytes:
    """What the client gets: as the relay does, nothing after a cut."""
    out = []
    for chunk in chunks:
        out.append(await meter.admit(chunk))
        if meter.cut:
            return b"".join(out)
    return b"".join(out) + meter.flush()


# A stream: the events' texts, which of them end their lines with CRLF, where the upstream
# cuts it into chunks.
_STREAMS = {"texts": _texts, "crlf": st.lists(st.booleans(), min_size=1, max_size=4),
            "cuts": st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)}


def _metered(framing: str, texts: list[str], crlf: list[bool], cuts: list[int], covered: int,
             extend: Callable[[int], Awaitable[Denial | None]]) -> tuple[list[bytes], list[int], StreamMeter, bytes]:
    """The events built from ``texts``, their outputs, a meter of ``framing`` covering
    ``covered`` (``extend``: what a request for more room gets), and what it relayed of the
    events split at ``cuts``."""
    events, outputs = _build(framing, texts, crlf)
    meter = FRAMINGS[framing][0](covered, extend)
    return events, outputs, meter, asyncio.run(_relay(meter, _chunks(b"".join(events), cuts)))


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
@settings(max_examples=150, deadline=None)
@given(**_STREAMS, covered=st.integers(0, 300))
def test_whole_events_pass_up_to_the_first_the_reservation_cannot_cover(
        framing: str, texts: list[str], crlf: list[bool], cuts: list[int], covered: int) -> None:
    events, outputs, meter, relayed = _metered(framing, texts, crlf, cuts, covered, _no_room)
    fitting, total = 0, 0
    while fitting < len(events) and total + outputs[fitting] <= covered:
        total += outputs[fitting]
        fitting += 1
    assert relayed == b"".join(events[:fitting])
    assert meter.cut == (fitting < len(events))
    assert meter.settled_count() == total <= covered
    assert (meter.denial is not None) == meter.cut


@pytest.mark.parametrize("framing", sorted(FRAMINGS))
@settings(max_examples=60, deadline=None)
@given(**_STREAMS, covered=st.integers(0, 40))
def test_with_room_to_extend_into_the_whole_stream_passes_and_is_counted(
        framing: str, texts: list[str], crlf: list[bool], cuts: list[int], covered: int) -> None:
    events, outputs, meter, relayed = _metered(framing, texts, crlf, cuts, covered, _room)
    assert relayed == b"".join(events)
    assert not meter.cut and meter.settled_count() == sum(outputs)
