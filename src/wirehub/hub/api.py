"""``POST /api/emit``: emit from any HTTP client, on every node (``Hub(api_key=...)``).

::

    curl -X POST http://127.0.0.1:8000/api/emit \\
         -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\
         -d '{"event": "news", "data": {"title": "hi"}, "room": "lobby"}'

The body is ``{"event", "data"?, "room"?, "peer"?}``: to a room, to one peer,
or (neither) to every peer. Answers: 200 ``{"ok": true}`` (with the room
event's ``epoch`` and ``offset``), 400 for a body that is not such an object,
401 without the right key, 413 when the body is larger than
``Limits.max_message_size``.
"""

from __future__ import annotations

import hmac
from typing import Any

import msgspec

from wirehub.exceptions import ConfigError
from wirehub.http.messages import Request, Response
from wirehub.http.routing import HttpHandler
from wirehub.hub.node import Node
from wirehub.hub.room import check_room_name
from wirehub.hub.target import Target
from wirehub.protocol import messages as wire

__all__ = ["EMIT_PATH", "EmitRequest", "emit_route"]

EMIT_PATH = "/api/emit"


class EmitRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The JSON body of ``POST /api/emit``."""

    event: str
    data: Any = None
    room: str | None = None
    peer: str | None = None


_decoder = msgspec.json.Decoder(EmitRequest)


def emit_route(node: Node, api_key: str) -> HttpHandler:
    """The handler of ``POST /api/emit``, answering only requests bearing ``api_key``."""
    if not isinstance(api_key, str) or not api_key:
        raise ConfigError("api_key is a non-empty string")
    expected = f"Bearer {api_key}".encode()

    async def emit(request: Request) -> Response:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            response = _error(401, "unauthorized", "send Authorization: Bearer <api key>")
            response.headers.append(("WWW-Authenticate", 'Bearer realm="wirehub"'))
            return response
        limit = node.limits.max_message_size
        if limit is not None and len(request.body) > limit:
            return _error(413, "too_large", f"the body is larger than {limit} bytes")
        try:
            body = _decoder.decode(request.body)
        except msgspec.DecodeError as exc:
            return _error(400, "bad_request", str(exc))
        problem = _check(body)
        if problem is not None:
            return _error(400, "bad_request", problem)
        target = Target(node, room=body.room, peer=body.peer)
        position = await target.emit(body.event, body.data)
        answer: dict[str, Any] = {"ok": True}
        if position is not None:
            answer.update(epoch=position.epoch, offset=position.offset)
        return Response.json(answer)

    return emit


def _check(body: EmitRequest) -> str | None:
    if not body.event:
        return "event is a non-empty string"
    if body.event in wire.CLIENT_CALLBACKS:
        return f"event {body.event!r}: the clients keep that name for their own callbacks"
    if body.room is not None and body.peer is not None:
        return "give room or peer, not both"
    if body.room is not None:
        return check_room_name(body.room)
    return None


def _error(status: int, code: str, message: str) -> Response:
    return Response.json({"ok": False, "error": code, "message": message}, status)
