"""The wirehub wire format, version 1 (docs/PROTOCOL.md is the specification).

Every message is one WebSocket message. JSON messages are text frames with a
``type`` field. A message whose data is bytes is a binary frame: a 4-byte
big-endian length N, N bytes of the JSON header (the same message without
``data``), then the payload bytes.

Client → server: ``emit``, ``join``, ``leave``, ``ping``, ``auth``, and ``ack``/``error``
answering an ``event`` the server sent with an ``id`` (a call).
Server → client: ``welcome``, ``event``, ``ack``, ``error``, ``presence``, ``refresh``, ``gap``,
``skip``, ``joined``, ``left``.
"""

from __future__ import annotations

import json
import struct
from typing import Annotated, Any

import msgspec

from wirehub.codes import ErrorCode
from wirehub.exceptions import ConfigError

__all__ = [
    "CLIENT_CALLBACKS",
    "PROTOCOL_VERSION",
    "Auth",
    "ClientMessage",
    "DecodeError",
    "Emit",
    "Gap",
    "Join",
    "Joined",
    "Leave",
    "Left",
    "Ping",
    "Position",
    "Refresh",
    "ServerMessage",
    "Skip",
    "decode_client",
    "decode_server",
    "encode",
    "encode_client",
    "encode_json",
    "event_body",
    "event_message",
    "pack_binary",
    "skip_message",
    "unpack_binary",
]

PROTOCOL_VERSION = 1

CLIENT_CALLBACKS = frozenset(
    {
        "connect",
        "disconnect",
        "reconnecting",
        "reconnect",
        "error",
        "presence",
        "gap",
        "joined",
        "left",
    }
)
"""Names the clients keep for their own callbacks: an event so named would never reach
the application (both clients drop it), so the server refuses to send one (§3)."""

_BINARY_HEADER = struct.Struct("!I")


class DecodeError(ValueError):
    """A message that is not valid for the protocol; ``str()`` says why.

    ``id`` is the message's request id when it can still be read, so the
    error answering it carries it and the caller is not left waiting.
    ``code`` is the error code to answer with: ``bad_message``, or
    ``invalid_data`` for JSON whose text no UTF-8 can carry (a lone
    surrogate such as ``"\\ud83d"``, left by slicing a string between the
    two halves of an emoji: JSON parsers accept it, Unicode does not).
    """

    def __init__(
        self, message: str, *, id: int | None = None, code: str = ErrorCode.BAD_MESSAGE
    ) -> None:
        super().__init__(message)
        self.id = id
        self.code = code


class Position(msgspec.Struct, frozen=True):
    """Where an event sits in its room's stream: offsets count up within an epoch.

    A new epoch means the server lost the room's history (restart, eviction):
    offsets from another epoch cannot be compared.
    """

    epoch: str
    offset: int


# -- client → server ---------------------------------------------------------


class Emit(msgspec.Struct, tag="emit", tag_field="type", omit_defaults=True):
    """Send an event to the server; with ``id``, the server answers ``ack`` or ``error``."""

    event: str
    data: msgspec.Raw = msgspec.Raw()  # empty when absent; decoded per handler type
    id: int | None = None


class Join(msgspec.Struct, tag="join", tag_field="type", omit_defaults=True):
    """Ask to join a room.

    ``since`` asks for the events missed after that position (recovery);
    ``history`` asks for the room's last N kept events (e.g. a chat's backlog).
    """

    room: str
    id: int | None = None
    since: Position | None = None
    history: Annotated[int, msgspec.Meta(ge=0)] = 0


class Leave(msgspec.Struct, tag="leave", tag_field="type", omit_defaults=True):
    room: str
    id: int | None = None


class Ping(msgspec.Struct, tag="ping", tag_field="type", omit_defaults=True):
    """Application-level ping (browsers cannot send WebSocket pings); answered by ``ack``."""

    id: int | None = None


class Auth(msgspec.Struct, tag="auth", tag_field="type"):
    """A token: the first message when the handshake carried none, or a fresh one
    answering ``refresh`` (PROTOCOL.md §13). With ``id``, acknowledged."""

    token: str
    id: int | None = None


# -- server → client ---------------------------------------------------------


class Welcome(msgspec.Struct, tag="welcome", tag_field="type", omit_defaults=True):
    v: int
    peer: str
    ping_interval: float | None
    limits: dict[str, int | None]
    rooms: dict[str, Position]  # rooms the server joined it to, with positions
    closed: dict[str, Any] | None = None  # how the server closed the handshake's last_peer


class Event(msgspec.Struct, tag="event", tag_field="type", omit_defaults=True):
    """An event for the client; with ``id`` a call, which the client answers ``ack``/``error``."""

    event: str
    data: Any = None
    room: str | None = None
    epoch: str | None = None
    offset: int | None = None
    id: int | None = None


class Ack(msgspec.Struct, tag="ack", tag_field="type"):
    id: int
    data: Any = None


class Error(msgspec.Struct, tag="error", tag_field="type", omit_defaults=True):
    code: str
    message: str
    id: int | None = None
    details: dict[str, Any] | None = None


# A client answers the server's calls with the server's own answer messages.
ClientMessage = Emit | Join | Leave | Ping | Auth | Ack | Error


class Presence(msgspec.Struct, tag="presence", tag_field="type", omit_defaults=True):
    room: str
    joined: dict[str, Any] | None = None
    left: dict[str, Any] | None = None


class Refresh(msgspec.Struct, tag="refresh", tag_field="type"):
    """The token expires in ``expires_in`` seconds: send a new one (an ``auth``) before that."""

    expires_in: float


class Gap(msgspec.Struct, tag="gap", tag_field="type"):
    """The client may have missed events of ``room`` up to and including ``(epoch, offset)``;
    its position there is now that one (PROTOCOL.md §7)."""

    room: str
    epoch: str
    offset: int
    reason: str = ""


class Skip(msgspec.Struct, tag="skip", tag_field="type"):
    """The event at ``(epoch, offset)`` of ``room`` was sent with ``exclude`` naming this
    client: its position takes it, its application gets nothing (PROTOCOL.md §7)."""

    room: str
    epoch: str
    offset: int


class Joined(msgspec.Struct, tag="joined", tag_field="type"):
    """The server put this client in ``room`` (after its welcome); every event of the room
    after ``(epoch, offset)`` reaches it, like a ``welcome.rooms`` entry (PROTOCOL.md §3)."""

    room: str
    epoch: str
    offset: int


class Left(msgspec.Struct, tag="left", tag_field="type"):
    """The server took this client out of ``room``: no event of it follows (PROTOCOL.md §3)."""

    room: str


ServerMessage = Welcome | Event | Ack | Error | Presence | Refresh | Gap | Skip | Joined | Left


def _enc_hook(obj: Any) -> Any:
    # pydantic models (optional dependency); anything else msgspec cannot encode is refused.
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_client_decoder = msgspec.json.Decoder(ClientMessage)
_server_decoder = msgspec.json.Decoder(ServerMessage)


def encode(message: msgspec.Struct) -> bytes:
    """Encode any message of this module as JSON bytes."""
    return _encoder.encode(message)


def encode_json(value: Any) -> bytes:
    """Encode a plain value (str, dict…) as JSON bytes."""
    return _encoder.encode(value)


# -- binary frames -----------------------------------------------------------


def pack_binary(header: bytes, payload: bytes) -> bytes:
    """A binary message: length-prefixed JSON header, then the payload."""
    return _BINARY_HEADER.pack(len(header)) + header + payload


def unpack_binary(message: bytes) -> tuple[bytes, bytes]:
    """Split a binary message into (JSON header, payload)."""
    if len(message) < 4:
        raise DecodeError("binary message shorter than its 4-byte header length")
    (length,) = _BINARY_HEADER.unpack_from(message)
    if length > len(message) - 4:
        raise DecodeError("binary message header length exceeds the message")
    return message[4 : 4 + length], message[4 + length :]


# -- decoding ----------------------------------------------------------------


def decode_client(message: str | bytes) -> tuple[ClientMessage, bytes | None]:
    """Decode a client message; return it and the binary payload, if any."""
    return _decode(_client_decoder, message)


def decode_server(message: str | bytes) -> tuple[ServerMessage, bytes | None]:
    """Decode a server message (for clients); return it and the binary payload, if any."""
    return _decode(_server_decoder, message)


def _decode(decoder: msgspec.json.Decoder[Any], message: str | bytes) -> tuple[Any, bytes | None]:
    payload = None
    if isinstance(message, bytes):
        message, payload = unpack_binary(message)
    try:
        return decoder.decode(message), payload
    except msgspec.DecodeError as exc:
        raise _explained(message, str(exc)) from None


def _explained(message: str | bytes, problem: str) -> DecodeError:
    """The error for a message msgspec refused, with its id if Python's parser can read it."""
    try:
        document = json.loads(message)
    except (ValueError, RecursionError):
        return DecodeError(problem)
    request_id = document.get("id") if isinstance(document, dict) else None
    if type(request_id) is not int or not -(2**63) <= request_id < 2**63:
        request_id = None
    elif document.get("type") in ("ack", "error"):
        request_id = None  # the id of a call of the server's: not one the client waits on
    try:
        json.dumps(document, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        surrogate = f"\\u{ord(exc.object[exc.start]):04x}"
        text = f"a string holds a lone surrogate ({surrogate}): not Unicode text"
        return DecodeError(text, id=request_id, code=ErrorCode.INVALID_DATA)
    except (ValueError, RecursionError):
        pass
    return DecodeError(problem, id=request_id)


def encode_client(message: msgspec.Struct, payload: bytes | None = None) -> str | bytes:
    """Encode a client message: text, or binary when there is a payload."""
    header = _encoder.encode(message)
    return header.decode() if payload is None else pack_binary(header, payload)


# -- events: encoded once, framed once per node ------------------------------


class _Body(msgspec.Struct):
    event: str
    data: Any = None


class _BinaryBody(msgspec.Struct):
    event: str


def event_body(event: str, data: Any) -> tuple[bytes, bytes | None]:
    """Encode an event's name and data once, for every receiver on every node.

    Returns the JSON object's members without the opening brace (so a node
    can prefix ``type``, ``room`` and position) and the binary payload when
    ``data`` is bytes. Raises ``TypeError`` for data JSON cannot carry, and
    ``ConfigError`` for a name in ``CLIENT_CALLBACKS``.
    """
    if event in CLIENT_CALLBACKS:
        raise ConfigError(
            f"event {event!r}: the clients keep that name for their own callbacks and would"
            f" not deliver it; choose another name (e.g. {'app_' + event!r})"
        )
    if isinstance(data, bytes | bytearray | memoryview):
        return _encoder.encode(_BinaryBody(event))[1:], bytes(data)
    try:
        return _encoder.encode(_Body(event, data))[1:], None
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"event {event!r}: {exc}") from None


_EVENT_HEAD = b'{"type":"event",'


def skip_message(room: str, position: Position) -> bytes:
    """The ``skip`` marker sent, in place of ``room``'s event at ``position``, to the
    member the event excluded (PROTOCOL.md §7): its client's position moves on."""
    return encode(Skip(room, position.epoch, position.offset))


def event_message(
    body: bytes,
    binary: bytes | None,
    room: str | None = None,
    position: Position | None = None,
    request_id: int | None = None,
) -> tuple[bytes, bool]:
    """The full ``event`` message from a body: ``(payload, is_text)``.

    ``request_id`` makes it a call to one client (never with a room).
    """
    if request_id is not None:
        header = b'{"type":"event","id":%d,%s' % (request_id, body)
    elif room is None:
        header = _EVENT_HEAD + body
    elif position is None:
        header = _EVENT_HEAD + b'"room":' + _encoder.encode(room) + b"," + body
    else:
        header = (
            _EVENT_HEAD
            + b'"room":'
            + _encoder.encode(room)
            + b',"epoch":'
            + _encoder.encode(position.epoch)
            + b',"offset":'
            + str(position.offset).encode()
            + b","
            + body
        )
    if binary is None:
        return header, True
    return pack_binary(header, binary), False
