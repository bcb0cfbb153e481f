"""The backplane's bytes and names (brokers/redis_wire.py), without Redis."""

from __future__ import annotations

import pytest

from wirehub.brokers.base import Publication
from wirehub.brokers.redis_wire import (
    EnvelopeError,
    all_channel,
    channel_of,
    decode,
    encode,
    encode_tail,
    history_args,
    parse_history,
    peer_channel,
    publish_args,
    room_channel,
)
from wirehub.protocol.messages import Position

PUBLICATIONS = [
    Publication(b'"event":"e","data":1}'),
    Publication(b'"event":"e"}', b"\x00\x01\xff", room="r", exclude="me"),
    Publication(b'"event":"e"}', room="r:with:colons", position=Position("Ab-_9z", 12345678901)),
    Publication(b'"event":"dm"}', peer="someone"),
    Publication(b'"joined":{"id":"x"}}', room="r", exclude="x", presence=True),
    Publication(b'"event":"\xc3\xa9"}', room="caf\u00e9 \U0001f600"),
]


@pytest.mark.parametrize("publication", PUBLICATIONS)
def test_envelopes_round_trip(publication: Publication) -> None:
    """Every field of a publication survives encoding and decoding."""
    assert decode(encode(publication)) == publication


def test_the_script_envelope_is_a_prefix_and_the_tail() -> None:
    """What the publish script sends (``0x01 EPOCH:OFFSET 0x00 tail``) decodes with its position."""
    publication = Publication(b'"event":"e"}', b"bin", room="r")
    message = b"\x01" + b"Xb3k9Q:42" + b"\x00" + encode_tail(publication)
    decoded = decode(message)
    assert decoded.position == Position("Xb3k9Q", 42)
    assert (decoded.body, decoded.binary, decoded.room) == (b'"event":"e"}', b"bin", "r")


@pytest.mark.parametrize(
    "message",
    [b"", b"\x02\x00", b"\x01no terminator", b"\x01x:notanumber\x00", b"\x01\x00\xc1", b"{}"],
)
def test_anything_else_is_an_envelope_error(message: bytes) -> None:
    """Bytes that are not a version-1 envelope raise EnvelopeError, never something else."""
    with pytest.raises(EnvelopeError):
        decode(message)


def test_names() -> None:
    """A room's channel is also its key; global and direct publications have one channel each."""
    assert room_channel("app", "lobby") == "app:room:lobby"
    assert (all_channel("app"), peer_channel("app")) == ("app:all", "app:peer")
    assert channel_of("app", Publication(b"", room="lobby")) == "app:room:lobby"
    assert channel_of("app", Publication(b"")) == "app:all"
    assert channel_of("app", Publication(b"", peer="p")) == "app:peer"


def test_script_arguments() -> None:
    """TTLs go in milliseconds; cluster mode publishes with SPUBLISH; the bytes bound last."""
    publication = Publication(b"{}", room="r")
    args = publish_args(publication, epoch="E", size=10, ttl=1.5, sharded=True, max_bytes=99)
    assert args == ["E", 10, 1500, encode_tail(publication), "SPUBLISH", 99]
    assert publish_args(publication, epoch="E", size=0, ttl=0.0001, sharded=False)[2:] == [
        1,  # never 0: the key always expires
        encode_tail(publication),
        "PUBLISH",
        1 << 20,
    ]
    assert history_args(None, 5, epoch="E", ttl=3) == ["E", 3000, "", 0, 5]
    assert history_args(Position("x", 3), 5, epoch="E", ttl=2) == ["E", 2000, "x", 3, 5]


def tail(n: int) -> bytes:
    return encode_tail(Publication(b'"event":"e","data":%d}' % n, room="r"))


def test_parse_history() -> None:
    """Missing fields are evicted publications: skipped for ``since=None``, fatal for recovery."""
    position, publications, recovered = parse_history([b"E", 5, 1, 3, [tail(3), tail(4)]], None)
    assert (position, recovered) == (Position("E", 5), True)
    assert [p.position for p in publications] == [Position("E", 3), Position("E", 4)]
    assert publications[0].room == "r"
    _, latest, _ = parse_history([b"E", 5, 1, 2, [None, tail(3), None, tail(5)]], None)
    assert [p.position.offset for p in latest if p.position] == [5]
    assert parse_history([b"E", 5, 1, 3, [None, tail(4), tail(5)]], Position("E", 2))[1:] == (
        [],
        False,
    )
    assert parse_history([b"E", 5, 0], Position("F", 2)) == (Position("E", 5), [], False)
