"""``ScriptedRoom``: a hand-written server of one room whose live deliveries the test controls.

A hub's node fills a hole in a room's stream itself, or sends a ``gap``
notice (hub/stream.py), so its clients never see a skipped offset or a new
epoch. The clients check for them anyway (PROTOCOL.md §7, "What a client
checks"): this server, written from PROTOCOL.md alone as a plain WebSocket
endpoint, lets a test send exactly that. It serves room ``news`` on ``/ws``
(and ``page`` on ``/`` for browsers), answers joins with history and
``since`` by the letter, and every other request with an empty ``ack``.
"""

from __future__ import annotations

import json
from typing import Any

from wirehub import Hub, Response, WebSocket

__all__ = ["ScriptedRoom"]


class ScriptedRoom:
    """Room ``news`` at ``(epoch, offset)``, keeping its last ``keep`` events for re-joins."""

    def __init__(self, keep: int = 100) -> None:
        self.keep = keep
        self.epoch = "E1"
        self.offset = 0
        self.kept: list[dict[str, Any]] = []
        self.joins: list[dict[str, Any]] = []  # every join received, in order
        self._sockets: set[WebSocket] = set()

    def hub(self, page: str | None = None) -> Hub:
        """A hub serving this room on ``/ws`` (and ``page`` on ``/``)."""
        hub = Hub(events_path=None)
        hub.websocket("/ws")(self._serve)
        if page is not None:
            hub.add_route("/", lambda request: Response.text(page, content_type="text/html"))
        return hub

    async def publish(
        self, data: Any, *, live: bool = True, skip: bool = False, kept: bool = True
    ) -> None:
        """The room's next event: kept (unless ``kept`` is False: history lost it), and sent
        to the clients unless ``live`` is False. ``skip``: an event that excluded the
        clients, which get a ``skip`` marker instead."""
        self.offset += 1
        event = {"type": "event", "event": "said", "data": data, "room": "news"}
        if skip:
            event = {"type": "skip", "room": "news"}
        await self._add(event, live=live, kept=kept)

    async def notice(self, reason: str, *, live: bool = True) -> None:
        """A ``gap`` notice at the room's position: kept (a re-join replays it in its place,
        and counts as recovered up to it), and sent to the clients unless ``live`` is False."""
        await self._add({"type": "gap", "room": "news", "reason": reason}, live=live, kept=True)

    async def _add(self, message: dict[str, Any], *, live: bool, kept: bool) -> None:
        message |= {"epoch": self.epoch, "offset": self.offset}
        if kept:
            self.kept = [*self.kept, message][-self.keep :]
        if live:
            for ws in list(self._sockets):
                await ws.send(json.dumps(message))

    def new_epoch(self) -> None:
        """The room lost its history: a new epoch, offsets from 1 again."""
        self.epoch = f"E{int(self.epoch[1:]) + 1}"
        self.offset = 0
        self.kept = []

    async def _serve(self, ws: WebSocket) -> None:
        limits = {"max_message_size": None, "max_rooms": None, "max_pending": None}
        welcome = {"type": "welcome", "v": 1, "peer": "p", "ping_interval": None}
        await ws.send(json.dumps(welcome | {"limits": limits, "rooms": {}}))
        self._sockets.add(ws)
        try:
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] == "join":
                    await self._join(ws, message)
                elif "id" in message:
                    await ws.send(json.dumps({"type": "ack", "id": message["id"], "data": None}))
        finally:
            self._sockets.discard(ws)

    async def _join(self, ws: WebSocket, join: dict[str, Any]) -> None:
        self.joins.append(join)
        ack: dict[str, Any] = {"epoch": self.epoch, "offset": self.offset}
        since = join.get("since")
        if since is not None:
            missed = [e for e in self.kept if e["offset"] > since["offset"]]
            covered = since["offset"]  # every offset up to it replayed, or a notice's
            for e in missed:
                if e["type"] == "gap" or e["offset"] == covered + 1:
                    covered = e["offset"]
            same = since["epoch"] == self.epoch and since["offset"] <= self.offset
            ack["recovered"] = same and covered == self.offset
            for event in missed if ack["recovered"] else []:
                await ws.send(json.dumps(event))
        await ws.send(json.dumps({"type": "ack", "id": join["id"], "data": ack}))
