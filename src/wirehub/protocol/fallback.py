"""The HTTP fallback's wire format, sans I/O (docs/PROTOCOL.md §14).

A fallback session carries the same messages as a WebSocket, in HTTP bodies.
A body, in both directions, is a sequence of **records** laid out like
WebSocket frames (RFC 6455 §5.2) with FIN set, no mask, no extension bits
and no fragmentation: opcode 1 (a text message), 2 (a binary message), 8
(close: a 2-byte code and a UTF-8 reason) and 9 (a ping the server starts
streams with; never counted, never answered). So the frame a broadcast
builds once for its WebSocket receivers is also the record its fallback
receivers get, byte for byte.

The server numbers the records it sends in a session from 0; a receive
request says how many the client has (``ack``) and gets the ones after
them, so a response lost on the way is sent again and none is sent twice
(``Outbox``). The client numbers the messages it sends the same way
(``seq``), so a POST retried after a network error is not processed twice.
"""

from __future__ import annotations

import codecs
import collections
import itertools
import struct

from wirehub.codes import CloseCode
from wirehub.protocol.websocket import Message

__all__ = [
    "PING_RECORD",
    "FramingError",
    "Outbox",
    "Received",
    "close_record",
    "parse_body",
]

TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9

PING_RECORD = bytes((0x80 | PING, 0))
"""What a stream starts with: the client learns at once that bytes flow through."""

_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_utf8 = codecs.getincrementaldecoder("utf-8")


class FramingError(ValueError):
    """A body that is not a valid sequence of records; ``code`` closes the session."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Received:
    """The messages of one client body, and the close record that ended it, if any."""

    __slots__ = ("close", "messages")

    def __init__(self, messages: list[Message], close: tuple[int, str] | None) -> None:
        self.messages = messages
        self.close = close


def parse_body(body: bytes, max_message_size: int | None) -> Received:
    """Split a client's body into messages; raise ``FramingError`` when it is not valid.

    Codes as a WebSocket would close with them: 1002 for a malformed record
    (or one after a close), 1009 for a message over ``max_message_size``,
    1007 for a text record that is not UTF-8.
    """
    messages: list[Message] = []
    view = memoryview(body)
    at = 0
    while at < len(body):
        if len(body) - at < 2:
            raise FramingError(CloseCode.PROTOCOL_ERROR, "truncated record")
        first, second = body[at], body[at + 1]
        if first & 0x70 or second & 0x80 or not first & 0x80:
            raise FramingError(CloseCode.PROTOCOL_ERROR, "records are unmasked, unfragmented")
        length, at = _length(body, at + 2, second & 0x7F)
        if len(body) - at < length:
            raise FramingError(CloseCode.PROTOCOL_ERROR, "truncated record")
        payload = view[at : at + length]
        at += length
        opcode = first & 0x0F
        if opcode == CLOSE:
            if at != len(body):
                raise FramingError(CloseCode.PROTOCOL_ERROR, "records after a close")
            return Received(messages, _close_of(bytes(payload)))
        if opcode not in (TEXT, BINARY):
            raise FramingError(CloseCode.PROTOCOL_ERROR, f"unexpected opcode {opcode}")
        if max_message_size is not None and length > max_message_size:
            raise FramingError(CloseCode.MESSAGE_TOO_BIG, "message too big")
        if opcode == BINARY:
            messages.append(bytes(payload))
            continue
        try:
            messages.append(_utf8().decode(payload, final=True))
        except UnicodeDecodeError:
            raise FramingError(CloseCode.INVALID_DATA, "invalid UTF-8") from None
    return Received(messages, None)


def _length(body: bytes, at: int, short: int) -> tuple[int, int]:
    """The payload length a record header gives, and where its payload starts."""
    if short == 126:
        if len(body) - at < 2:
            raise FramingError(CloseCode.PROTOCOL_ERROR, "truncated record")
        return _U16.unpack_from(body, at)[0], at + 2
    if short == 127:
        if len(body) - at < 8:
            raise FramingError(CloseCode.PROTOCOL_ERROR, "truncated record")
        return _U64.unpack_from(body, at)[0], at + 8
    return short, at


def _close_of(payload: bytes) -> tuple[int, str]:
    if not payload:
        return CloseCode.NORMAL, ""  # RFC 6455 §7.1.5: no code given
    if len(payload) < 2:
        raise FramingError(CloseCode.PROTOCOL_ERROR, "a close code is 2 bytes")
    try:
        return _U16.unpack_from(payload)[0], payload[2:].decode()
    except UnicodeDecodeError:
        raise FramingError(CloseCode.INVALID_DATA, "invalid UTF-8 in the close reason") from None


def close_record(code: int, reason: str = "") -> bytes:
    """The close record: ``code`` and as much of ``reason`` as fits in 123 bytes."""
    text = reason.encode()[:123].decode(errors="ignore").encode()  # never a split character
    payload = _U16.pack(code) + text
    return bytes((0x80 | CLOSE, len(payload))) + payload


class Outbox:
    """The records of one session that the client has not acknowledged.

    ``append`` adds one; ``take`` returns, as one chunk, those not handed
    out since the last ``rewind``; ``rewind(ack)`` forgets the first ``ack``
    records of the session (the client has them) and hands out the rest
    again. ``size`` is the bytes kept, ``count`` the records ever appended.
    """

    __slots__ = ("_records", "acked", "count", "size", "taken")

    def __init__(self) -> None:
        self._records: collections.deque[bytes] = collections.deque()
        self.acked = 0  # records the client acknowledged: the number of records[0]
        self.taken = 0  # records handed out to the current receive request
        self.count = 0
        self.size = 0

    def append(self, record: bytes) -> None:
        self._records.append(record)
        self.count += 1
        self.size += len(record)

    @property
    def pending(self) -> bool:
        """Whether some records wait to be handed out."""
        return self.taken < self.count

    def rewind(self, ack: int) -> None:
        """The client has ``ack`` records: forget them, hand out the rest again.

        An ``ack`` below what was already acknowledged comes from a stale
        request: the records after the acknowledged ones go out again.
        Raises ``ValueError`` for an ``ack`` past the records sent.
        """
        if ack > self.count:
            raise ValueError(f"ack {ack} is past the {self.count} records sent")
        while self.acked < ack:
            self.size -= len(self._records.popleft())
            self.acked += 1
        self.taken = self.acked

    def take(self) -> bytes:
        """The records not handed out yet, as one chunk (empty when none)."""
        if not self.pending:
            return b""
        start = self.taken - self.acked
        chunk = b"".join(itertools.islice(self._records, start, None))
        self.taken = self.count
        return chunk
