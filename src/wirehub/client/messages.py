"""The client's messages, built as docs/PROTOCOL.md §3 lists them (no I/O).

JSON messages are dicts, encoded with the protocol module's encoder; a
message whose data is bytes is already a binary message (§1).
"""

from __future__ import annotations

from typing import Any

from wirehub.codes import ErrorCode
from wirehub.exceptions import EventError
from wirehub.protocol import messages as wire

__all__ = [
    "answer_message",
    "auth_message",
    "emit_message",
    "encode",
    "join_message",
    "leave_message",
    "ping_message",
]


def emit_message(event: str, data: Any, id: int | None) -> dict[str, Any] | bytes:
    """An ``emit``: a dict for JSON data, a binary message when ``data`` is bytes."""
    message: dict[str, Any] = {"type": "emit", "event": event}
    if id is not None:
        message["id"] = id
    if isinstance(data, bytes | bytearray | memoryview):
        return wire.pack_binary(wire.encode_json(message), bytes(data))
    if data is not None:
        message["data"] = data
    return message


def join_message(room: str, since: wire.Position | None, history: int, id: int) -> dict[str, Any]:
    """A ``join`` request: recovering from ``since``, or replaying ``history`` events."""
    message: dict[str, Any] = {"type": "join", "room": room, "id": id}
    if since is not None:
        message["since"] = {"epoch": since.epoch, "offset": since.offset}
    if history:
        message["history"] = history
    return message


def leave_message(room: str, id: int) -> dict[str, Any]:
    """A ``leave`` request."""
    return {"type": "leave", "room": room, "id": id}


def ping_message(id: int) -> dict[str, Any]:
    """An application ``ping`` request."""
    return {"type": "ping", "id": id}


def auth_message(token: str, id: int) -> dict[str, Any]:
    """An ``auth`` request: a fresh token, answering the server's ``refresh`` (§13)."""
    return {"type": "auth", "token": token, "id": id}


def answer_message(id: int, value: Any, error: BaseException | None) -> dict[str, Any] | bytes:
    """The answer to the server's call ``id`` (§4): an ``ack`` with ``value`` (binary for
    bytes), or an ``error`` with an ``EventError``'s code, message and details
    (``internal_error`` for any other exception: its text stays on this side)."""
    if error is None:
        if isinstance(value, bytes | bytearray | memoryview):
            return wire.pack_binary(wire.encode_json({"type": "ack", "id": id}), bytes(value))
        return {"type": "ack", "id": id, "data": value}
    if not isinstance(error, EventError):
        error = EventError(ErrorCode.INTERNAL_ERROR, "internal error")
    message: dict[str, Any] = {"type": "error", "id": id, "code": error.code}
    message["message"] = error.message
    if error.details is not None:
        message["details"] = error.details
    return message


def encode(message: dict[str, Any] | bytes) -> bytes:
    """A message as bytes; raises ``TypeError`` when its data cannot be JSON."""
    if isinstance(message, bytes):
        return message
    try:
        return wire.encode_json(message)
    except (TypeError, ValueError) as exc:  # msgspec.EncodeError is a ValueError
        raise TypeError(f"cannot send as JSON: {exc}") from None
