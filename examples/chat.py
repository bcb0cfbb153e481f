"""Multi-room chat on the event layer.

    wirehub serve examples/chat.py:hub --port 8000

Clients connect to ``/ws?name=ada``, join rooms with the protocol's ``join``
(members see ``presence`` notices), and send ``say`` events::

    {"type": "emit", "event": "say", "data": {"room": "lobby", "text": "hi"}, "id": 1}

Everyone else in the room receives a ``message`` event; the sender gets the
ack. ``nick`` renames, ``rooms`` lists the rooms with their member counts.
"""

from __future__ import annotations

import time

import msgspec

from wirehub import EventError, Hub, Peer, Request

hub = Hub(presence=True)


class Say(msgspec.Struct):
    room: str
    text: str


def _nickname(value: str | None) -> str:
    name = (value or "").strip()[:32]
    return name or "anonymous"


@hub.on("connect")
async def connect(peer: Peer, request: Request) -> None:
    peer.info["name"] = _nickname(request.query.get("name"))


@hub.on("nick")
def nick(peer: Peer, name: str) -> dict[str, str]:
    peer.info["name"] = _nickname(name)
    return {"name": peer.info["name"]}


@hub.on("say")
async def say(peer: Peer, msg: Say) -> dict[str, float]:
    if msg.room not in peer.rooms:
        raise EventError("not_joined", f"join {msg.room!r} before speaking there")
    text = msg.text.strip()[:2000]
    if not text:
        raise EventError("empty", "say something")
    ts = time.time()
    message = {"room": msg.room, "from": peer.info["name"], "text": text, "ts": ts}
    await hub.to(msg.room).emit("message", message, exclude=peer)
    return {"ts": ts}


@hub.on("rooms")
def rooms(peer: Peer) -> dict[str, int]:
    return {name: len(room) for name, room in sorted(hub.rooms.items())}


if __name__ == "__main__":
    hub.run()
