"""The HTTP fallback's records and outbox, sans I/O (docs/PROTOCOL.md §14)."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hub.fallback_wire import BINARY, CLOSE, TEXT, record, records
from wirehub.protocol.fallback import FramingError, Outbox, close_record, parse_body
from wirehub.protocol.websocket import encode_frame

messages = st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=70_000)), max_size=5)


@given(messages)
def test_records_round_trip(sent: list[str | bytes]) -> None:
    body = b"".join(
        record(TEXT, m.encode()) if isinstance(m, str) else record(BINARY, m) for m in sent
    )
    received = parse_body(body, None)
    assert received.messages == sent and received.close is None


@given(st.binary(max_size=300), st.booleans())
def test_a_server_frame_is_a_record(payload: bytes, text: bool) -> None:
    """What the server writes to a WebSocket is what it writes to a fallback session."""
    [(opcode, got)] = records(encode_frame(payload, text))
    assert (opcode, got) == (TEXT if text else BINARY, payload)


def test_close() -> None:
    body = record(TEXT, b"{}") + record(CLOSE, struct.pack("!H", 4000) + "bye ✓".encode())
    received = parse_body(body, None)
    assert received.messages == ["{}"] and received.close == (4000, "bye ✓")
    assert parse_body(record(CLOSE, b""), None).close == (1000, "")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\x81", 1002),  # cut header
        (b"\x81\x05ab", 1002),  # cut payload
        (b"\x81\x7e\x00", 1002),  # cut 16-bit length
        (b"\x81\x7f" + b"\x00" * 7, 1002),  # cut 64-bit length
        (b"\x81\x82abcd\x00\x00", 1002),  # masked
        (b"\x01\x00", 1002),  # not FIN: a fragment
        (b"\xc1\x00", 1002),  # an extension bit
        (b"\x8a\x00", 1002),  # a pong: not a message
        (b"\x88\x01\x03", 1002),  # a one-byte close code
        (record(CLOSE, b"") + record(TEXT, b"{}"), 1002),  # after a close
        (record(TEXT, b"\xff"), 1007),
        (record(CLOSE, b"\x03\xe8\xff"), 1007),
        (record(BINARY, b"x" * 11), 1009),
    ],
)
def test_bad_bodies(body: bytes, code: int) -> None:
    with pytest.raises(FramingError) as caught:
        parse_body(body, 10)
    assert caught.value.code == code


def test_close_record_reason_is_cut_whole() -> None:
    """A close record's payload fits a control frame: 125 bytes, no split character."""
    [(opcode, payload)] = records(close_record(1001, "é" * 100))
    assert opcode == CLOSE and len(payload) <= 125
    assert struct.unpack("!H", payload[:2]) == (1001,)
    assert payload[2:].decode() == "é" * 61


def test_outbox() -> None:
    """Records are handed out once per request and kept until acknowledged."""
    outbox = Outbox()
    for n in range(3):
        outbox.append(b"r%d" % n)
    assert outbox.take() == b"r0r1r2" and outbox.take() == b""
    outbox.rewind(1)  # the client has r0: the next request starts at r1
    assert (outbox.size, outbox.take()) == (4, b"r1r2")
    outbox.rewind(0)  # a stale request: what is still kept goes out again
    assert outbox.take() == b"r1r2"
    outbox.append(b"r3")
    assert outbox.take() == b"r3"
    outbox.rewind(4)
    assert (outbox.size, outbox.pending, outbox.take()) == (0, False, b"")
    with pytest.raises(ValueError):
        outbox.rewind(5)


def test_the_protocol_example() -> None:
    """The hex example of PROTOCOL.md §14 is a ping and a close, as it says."""
    doc = (Path(__file__).parents[2] / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    block = re.search(r"then a close with code 1000, is:\n\n```\n(.*?)```", doc, re.S)
    assert block
    received = parse_body(bytes.fromhex(block.group(1)), None)
    assert received.messages == ['{"type":"ping","id":1}'] and received.close == (1000, "")
