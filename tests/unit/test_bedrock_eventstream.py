"""The AWS event-stream decoder: messages cut at every byte, CRC checks, lengths out of
bounds; and the encoder checked against botocore's own decoder."""

from __future__ import annotations

import struct
import zlib

import orjson
import pytest

from tollway.governance.decisions import Decision, Denial
from tollway.providers.adapters.bedrock_eventstream import (
    MAX_MESSAGE_LENGTH,
    EventStreamDecoder,
    EventStreamError,
    encode_event,
    encode_exception,
    encode_message,
)
from tollway.proxy.bedrock_metering import EventStreamMeter

eventstream = pytest.importorskip("botocore.eventstream", reason="botocore is the bedrock extra")

MESSAGES = [encode_event("messageStart", b'{"role":"assistant"}'),
            encode_event("contentBlockDelta", '{"contentBlockIndex":0,"delta":{"text":"héllo"}}'.encode()),
            encode_exception("throttlingException", b'{"message":"slow down"}')]
STREAM = b"".join(MESSAGES)


def decode_all(chunks: list[bytes]) -> list[tuple[str, str, bytes]]:
    decoder = EventStreamDecoder()
    out = [(m.message_type, m.event_type, m.payload) for chunk in chunks for m in decoder.feed(chunk)]
    assert decoder.pending == 0
    return out


def test_botocore_reads_what_the_encoder_writes() -> None:
    buffer = eventstream.EventStreamBuffer()
    buffer.add_data(STREAM)
    decoded = list(buffer)
    assert [m.headers[":event-type"] for m in decoded[:2]] == ["messageStart", "contentBlockDelta"]
    assert decoded[2].headers == {":exception-type": "throttlingException", ":content-type": "application/json",
                                  ":message-type": "exception"}
    assert decoded[1].payload == '{"contentBlockIndex":0,"delta":{"text":"héllo"}}'.encode()


def test_whole_messages_decode() -> None:
    assert decode_all([STREAM]) == [
        ("event", "messageStart", b'{"role":"assistant"}'),
        ("event", "contentBlockDelta", '{"contentBlockIndex":0,"delta":{"text":"héllo"}}'.encode()),
        ("exception", "throttlingException", b'{"message":"slow down"}')]


@pytest.mark.parametrize("cut", range(1, len(MESSAGES[0]) + 20))
def test_a_stream_cut_at_any_byte_decodes_the_same(cut: int) -> None:
    assert decode_all([STREAM[:cut], STREAM[cut:]]) == decode_all([STREAM])


def test_a_stream_fed_byte_by_byte_decodes_the_same() -> None:
    assert decode_all([STREAM[i:i + 1] for i in range(len(STREAM))]) == decode_all([STREAM])


def test_a_corrupt_payload_fails_the_message_crc() -> None:
    corrupt = bytearray(MESSAGES[0])
    corrupt[-6] ^= 0x01  # a payload byte
    with pytest.raises(EventStreamError, match="message CRC"):
        list(EventStreamDecoder().feed(bytes(corrupt)))


def test_a_corrupt_prelude_fails_the_prelude_crc_before_any_length_is_trusted() -> None:
    corrupt = bytearray(MESSAGES[0])
    corrupt[2] ^= 0x40  # the total length: a reader that trusted it would wait for megabytes
    with pytest.raises(EventStreamError, match="prelude CRC"):
        list(EventStreamDecoder().feed(bytes(corrupt)))


def test_lengths_out_of_bounds_are_refused() -> None:
    prelude = struct.pack(">II", MAX_MESSAGE_LENGTH + 1, 0)
    with pytest.raises(EventStreamError):
        list(EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude))))
    prelude = struct.pack(">II", 20, 10)  # headers longer than the message holds
    with pytest.raises(EventStreamError):
        list(EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)) + b"\0" * 8))


def test_a_truncated_header_is_refused() -> None:
    block = b"\x05:name\x07\x00\x10abc"  # a string header that claims 16 bytes and has 3
    total = 16 + len(block)
    prelude = struct.pack(">II", total, len(block))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + block
    with pytest.raises(EventStreamError):
        list(EventStreamDecoder().feed(head + struct.pack(">I", zlib.crc32(head))))


def test_typed_headers_decode() -> None:
    block = (b"\x01a\x00" + b"\x01b\x01" + b"\x01c\x03" + struct.pack(">h", -2) + b"\x01d\x04" + struct.pack(">i", 7)
             + b"\x01e\x06" + struct.pack(">H", 2) + b"\x00\x01")
    total = 16 + len(block)
    prelude = struct.pack(">II", total, len(block))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + block
    [message] = EventStreamDecoder().feed(head + struct.pack(">I", zlib.crc32(head)))
    assert message.headers == {"a": True, "b": False, "c": -2, "d": 7, "e": b"\x00\x01"}
    assert message.payload == b""


def test_an_empty_message_round_trips() -> None:
    [message] = EventStreamDecoder().feed(encode_message({}, b""))
    assert message.headers == {} and message.payload == b"" and message.message_type == "event"


# --- the stream meter in event-stream framing --------------------------------------------------

def delta(text: str) -> bytes:
    return encode_event("contentBlockDelta", orjson.dumps({"contentBlockIndex": 0, "delta": {"text": text}}))


async def no_room(tokens: int) -> Denial | None:
    return Denial(Decision.BUDGET_EXCEEDED, "no room")


async def test_the_meter_relays_each_whole_message_as_it_arrives() -> None:
    meter = EventStreamMeter(1_000, no_room)
    first, second = delta("hello"), delta("world")
    assert await meter.admit(first[:10]) == b""  # half a prelude: held
    assert await meter.admit(first[10:] + second[:5]) == first  # relayed at once, not at the end of the stream
    assert await meter.admit(second[5:]) == second
    assert meter.settled_count() == 10 and not meter.cut


async def test_the_meter_cuts_before_the_message_that_does_not_fit() -> None:
    meter = EventStreamMeter(12, no_room)
    start = encode_event("messageStart", b'{"role":"assistant"}')
    stream = start + delta("0123456789") + delta("abcdef") + delta("x")
    admitted = await meter.admit(stream)
    assert admitted == start + delta("0123456789") and meter.cut and meter.counted == 10
    assert meter.denial is not None


async def test_the_meter_counts_tool_input_and_names() -> None:
    meter = EventStreamMeter(0, no_room)
    tool = encode_event("contentBlockStart", orjson.dumps({"contentBlockIndex": 1, "start": {"toolUse": {
        "toolUseId": "tooluse_1234567890", "name": "get_weather"}}}))
    assert await meter.admit(tool) == b"" and meter.cut  # the name is output too (11 bytes)
