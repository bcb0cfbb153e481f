"""How the Redis backplane is laid out: names, envelope bytes and Lua scripts.

Shared by ``RedisBroker`` and the emitters (``wirehub.Emitter``), so every
publisher writes the same thing. No I/O and no ``redis`` import here.

**Names.** With prefix ``P``:

- ``P:room:NAME`` is both the room's *channel* and its *key*: a hash holding
  the epoch (``e``), the last offset (``o``), the first kept offset (``f``),
  the bytes kept (``b``) and the kept publications (one field per offset).
  The key always expires ``history_ttl`` after its last publication or
  history read, so a room nobody uses costs nothing for long. Using the
  same string for both puts them in the same Redis Cluster slot, so one
  script can update the key and ``SPUBLISH`` on the channel.
- ``P:all`` carries publications to every peer, ``P:peer`` those to one peer.
  Every node subscribes to both; a node that does not have the peer drops
  the publication (no peer→node table to keep right, at the price of one
  message per node).

**Envelope.** What a channel carries: ``0x01`` (format version), the ASCII
head ``EPOCH:OFFSET`` (empty for publications without a position), ``0x00``,
then the *tail*: a msgpack array ``[room, peer, exclude, presence, body,
binary]`` encoded once by the publisher. The publish script prepends the
position it assigned, so the tail is never decoded in Redis; history keeps
the tail only.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from wirehub.brokers.base import Publication
from wirehub.protocol.messages import Position

__all__ = [
    "HISTORY_SCRIPT",
    "PUBLISH_SCRIPT",
    "Commands",
    "EnvelopeError",
    "all_channel",
    "decode",
    "encode",
    "encode_tail",
    "history_args",
    "pack",
    "parse_history",
    "parse_position",
    "peer_channel",
    "publish_args",
    "room_channel",
]

VERSION = b"\x01"


class EnvelopeError(ValueError):
    """Bytes on a wirehub channel that are not an envelope of this version."""


# -- names ---------------------------------------------------------------------


def room_channel(prefix: str, room: str) -> str:
    """The channel of ``room``, which is also the key of its hash."""
    return f"{prefix}:room:{room}"


def all_channel(prefix: str) -> str:
    return f"{prefix}:all"


def peer_channel(prefix: str) -> str:
    return f"{prefix}:peer"


def channel_of(prefix: str, publication: Publication) -> str:
    """Where ``publication`` is published."""
    if publication.room is not None:
        return room_channel(prefix, publication.room)
    return all_channel(prefix) if publication.peer is None else peer_channel(prefix)


# -- the envelope ----------------------------------------------------------------


class _Tail(msgspec.Struct, array_like=True):
    room: str | None
    peer: str | None
    exclude: str | None
    presence: bool
    body: bytes
    binary: bytes | None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Tail)


def encode_tail(publication: Publication) -> bytes:
    """The part of an envelope that the publisher encodes once."""
    p = publication
    return _encoder.encode(_Tail(p.room, p.peer, p.exclude, p.presence, p.body, p.binary))


def encode(publication: Publication) -> bytes:
    """A whole envelope (the publish script builds the ones that get a position)."""
    head = b""
    if publication.position is not None:
        head = f"{publication.position.epoch}:{publication.position.offset}".encode()
    return VERSION + head + b"\x00" + encode_tail(publication)


def decode(message: bytes) -> Publication:
    """The publication in an envelope; raises ``EnvelopeError`` for anything else."""
    if message[:1] != VERSION:
        raise EnvelopeError("not a version 1 wirehub envelope")
    end = message.find(b"\x00", 1)
    if end < 0:
        raise EnvelopeError("envelope without a head terminator")
    position = None
    if end > 1:
        epoch, _, offset = message[1:end].partition(b":")
        try:
            position = Position(epoch.decode(), int(offset))
        except ValueError:
            raise EnvelopeError(f"bad position {message[1:end]!r}") from None
    return _publication(memoryview(message)[end + 1 :], position)


def _publication(tail: bytes | memoryview, position: Position | None) -> Publication:
    try:
        t = _decoder.decode(tail)
    except msgspec.DecodeError as exc:
        raise EnvelopeError(f"bad envelope: {exc}") from None
    return Publication(t.body, t.binary, t.room, t.peer, t.exclude, position, t.presence)


# -- scripts -------------------------------------------------------------------------

# One round trip per room publication: the offset is assigned, the tail kept
# and the envelope published atomically, so every node sees one order. Kept
# publications are bounded per room in count (ARGV[2]) and bytes (ARGV[6]):
# 'f' is the first kept offset and 'b' the bytes kept. The key always expires
# (ARGV[3] ms after the last publication or history read), and then the room
# gets a new random epoch: offsets never repeat within an epoch.
PUBLISH_SCRIPT = """
local key = KEYS[1]
local epoch = redis.call('HGET', key, 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', key, 'e', epoch)
end
local offset = redis.call('HINCRBY', key, 'o', 1)
local size = tonumber(ARGV[2])
local most = tonumber(ARGV[6])
if size > 0 and string.len(ARGV[4]) <= most then
  redis.call('HSET', key, offset, ARGV[4])
  local first = tonumber(redis.call('HGET', key, 'f') or offset)
  local kept = redis.call('HINCRBY', key, 'b', string.len(ARGV[4]))
  while first < offset and (offset - first >= size or kept > most) do
    kept = redis.call('HINCRBY', key, 'b', -redis.call('HSTRLEN', key, first))
    redis.call('HDEL', key, first)
    first = first + 1
  end
  redis.call('HSET', key, 'f', first)
end
redis.call('PEXPIRE', key, ARGV[3])
redis.call(ARGV[5], key, '\\1' .. epoch .. ':' .. string.format('%d', offset) .. '\\0' .. ARGV[4])
return {epoch, offset}
"""

# Reads the room's position and the kept publications a recovery needs;
# creates the room's epoch when it has none, so a join learns the epoch that
# the next publication will carry. It refreshes the key's expiry: the nodes'
# periodic position checks keep a quiet room that has members on its epoch.
HISTORY_SCRIPT = """
local key = KEYS[1]
local epoch = redis.call('HGET', key, 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', key, 'e', epoch, 'o', 0)
end
redis.call('PEXPIRE', key, ARGV[2])
local offset = tonumber(redis.call('HGET', key, 'o'))
local limit = tonumber(ARGV[5])
local first
if ARGV[3] == '' then
  first = math.max(offset - limit + 1, 1)
else
  local since = tonumber(ARGV[4])
  if ARGV[3] ~= epoch or since > offset or offset - since > limit then
    return {epoch, offset, 0}
  end
  first = since + 1
end
if first > offset then return {epoch, offset, 1, first, {}} end
local fields = {}
for i = first, offset do fields[#fields + 1] = i end
return {epoch, offset, 1, first, redis.call('HMGET', key, unpack(fields))}
"""


def _ttl_ms(ttl: float) -> int:
    return max(1, round(ttl * 1000))


def publish_args(
    publication: Publication,
    *,
    epoch: str,
    size: int,
    ttl: float,
    sharded: bool,
    max_bytes: int = 1 << 20,
) -> list[Any]:
    """``ARGV`` of ``PUBLISH_SCRIPT``; ``epoch`` is used only if the room has none.

    ``size`` and ``max_bytes`` bound what the room keeps (events, bytes of
    their encoded tails); ``ttl`` (seconds) is when the room's key expires.
    """
    command = "SPUBLISH" if sharded else "PUBLISH"
    return [epoch, size, _ttl_ms(ttl), encode_tail(publication), command, max_bytes]


def parse_position(reply: Any) -> Position:
    """The position ``PUBLISH_SCRIPT`` answered."""
    epoch, offset = reply
    return Position(epoch.decode() if isinstance(epoch, bytes) else epoch, int(offset))


def history_args(since: Position | None, limit: int, *, epoch: str, ttl: float) -> list[Any]:
    """``ARGV`` of ``HISTORY_SCRIPT``; ``epoch`` is used only if the room has none."""
    if since is None:
        return [epoch, _ttl_ms(ttl), "", 0, max(limit, 0)]
    return [epoch, _ttl_ms(ttl), since.epoch, since.offset, max(limit, 0)]


def parse_history(reply: Any, since: Position | None) -> tuple[Position, list[Publication], bool]:
    """``(position, publications, recovered)`` from ``HISTORY_SCRIPT``'s answer.

    A missing field is a publication no longer kept: a recovery then fails
    (``recovered=False``); a request for the latest ones gets those after it.
    """
    position = parse_position(reply[:2])
    if not reply[2]:
        return position, [], False
    first, items = int(reply[3]), reply[4]
    if since is None:
        start = max((i + 1 for i, item in enumerate(items) if item is None), default=0)
    elif any(item is None for item in items):
        return position, [], False
    else:
        start = 0
    publications = [
        _publication(item, Position(position.epoch, first + i))
        for i, item in enumerate(items)
        if i >= start
    ]
    return position, publications, True


# -- packed commands ---------------------------------------------------------------


def pack(*args: bytes | str | int) -> bytes:
    """One command as a RESP array of bulk strings (str as UTF-8, int in decimal)."""
    return b"*%d\r\n" % len(args) + b"".join(map(_bulk, args))


def _bulk(arg: bytes | str | int) -> bytes:
    if isinstance(arg, str):
        arg = arg.encode()
    elif isinstance(arg, int):
        arg = b"%d" % arg
    return b"$%d\r\n%b\r\n" % (len(arg), arg)


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


class Commands:
    """The commands ``RedisBroker`` sends, packed as RESP with its settings built in.

    A room publication is ``EVALSHA`` of ``PUBLISH_SCRIPT`` with the
    ``publish_args``; everything but the key, the epoch and the tail is the
    same for every publication, so it is packed once here, and a publication
    costs one bytes format (redis-py packed and encoded each argument anew).
    """

    publish_sha = _sha(PUBLISH_SCRIPT)
    history_sha = _sha(HISTORY_SCRIPT)

    def __init__(
        self, prefix: str, *, size: int, ttl: float, sharded: bool, max_bytes: int
    ) -> None:
        self.prefix = prefix
        self.ttl_ms = _ttl_ms(ttl)
        self.publish_command = "SPUBLISH" if sharded else "PUBLISH"
        # EVALSHA sha 1 KEY EPOCH size ttl TAIL command max_bytes: 10 bulk strings
        self._head = b"*10\r\n" + _bulk("EVALSHA") + _bulk(self.publish_sha) + _bulk(1)
        self._middle = _bulk(size) + _bulk(self.ttl_ms)
        self._end = _bulk(self.publish_command) + _bulk(max_bytes)

    def publish(self, publication: Publication, epoch: bytes) -> bytes:
        """The command that publishes ``publication`` (``epoch`` if its room has none)."""
        if not publication.numbered:
            channel = channel_of(self.prefix, publication)
            return pack(self.publish_command, channel, encode(publication))
        key = room_channel(self.prefix, publication.room or "").encode()
        tail = encode_tail(publication)
        return b"%b$%d\r\n%b\r\n$%d\r\n%b\r\n%b$%d\r\n%b\r\n%b" % (
            self._head,
            len(key),
            key,
            len(epoch),
            epoch,
            self._middle,
            len(tail),
            tail,
            self._end,
        )

    def history(self, room: str, since: Position | None, limit: int, epoch: bytes) -> bytes:
        """The command that reads ``room``'s position and kept publications (``HISTORY_SCRIPT``)."""
        key = room_channel(self.prefix, room)
        args = history_args(since, limit, epoch="", ttl=self.ttl_ms / 1000)
        return pack("EVALSHA", self.history_sha, 1, key, epoch, *args[1:])

    def load(self) -> list[bytes]:
        """The commands that load both scripts (answered with their SHA1s)."""
        return [pack("SCRIPT", "LOAD", PUBLISH_SCRIPT), pack("SCRIPT", "LOAD", HISTORY_SCRIPT)]
