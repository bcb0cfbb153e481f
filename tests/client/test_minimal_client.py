"""A third-party client written from docs/PROTOCOL.md alone, against a real hub.

``MiniClient`` uses only the ``websockets`` library, ``json`` and ``struct``:
nothing from wirehub. If the protocol document and the server drift apart,
these tests fail. (The hub side uses wirehub, of course.)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from tests.conftest import UNIT, serve
from wirehub import EventError, Hub
from wirehub.hub.peer import Peer

# -- the client: PROTOCOL.md §1 (transport), §3 (messages), §4 (requests) --------


def pack(header: dict[str, Any], payload: bytes) -> bytes:
    """§1: 4-byte big-endian header length, the JSON header, then the payload."""
    head = json.dumps(header).encode()
    return struct.pack(">I", len(head)) + head + payload


def unpack(message: bytes) -> dict[str, Any]:
    """§1: a binary message is a JSON header (the message minus ``data``) + the data."""
    (length,) = struct.unpack(">I", message[:4])
    header: dict[str, Any] = json.loads(message[4 : 4 + length])
    header["data"] = message[4 + length :]
    return header


class MiniClient:
    """The smallest useful client: requests with ids, answers matched by id, events queued."""

    def __init__(self, ws: ClientConnection, welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.welcome = welcome
        self.ids = itertools.count(1)
        self.answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.trace: list[str] = []  # the type of every message received, in order
        self.reader = asyncio.ensure_future(self.read())

    @classmethod
    async def open(cls, url: str) -> MiniClient:
        ws = await ws_connect(url, proxy=None, open_timeout=UNIT)
        welcome = json.loads(await asyncio.wait_for(ws.recv(), UNIT))  # §2: always first
        assert welcome["type"] == "welcome" and welcome["v"] == 1
        return cls(ws, welcome)

    async def close(self) -> None:
        await self.ws.close()
        await self.reader

    async def read(self) -> None:
        async for raw in self.ws:
            message = unpack(raw) if isinstance(raw, bytes) else json.loads(raw)
            self.trace.append(message["type"])
            if message["type"] in ("ack", "error") and message.get("id") in self.answers:
                self.answers.pop(message["id"]).set_result(message)
            elif message["type"] in ("event", "error", "presence"):
                self.events.put_nowait(message)
            # §11: unknown message types are ignored

    async def request(self, message: dict[str, Any], payload: bytes | None = None) -> Any:
        """Send with a fresh id; return the ack's data or the error message (§4)."""
        message["id"] = id = next(self.ids)
        self.answers[id] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps(message) if payload is None else pack(message, payload))
        answer = await asyncio.wait_for(self.answers[id], UNIT)
        return answer["data"] if answer["type"] == "ack" else answer

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def event(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), UNIT)


# -- the server under test ---------------------------------------------------------


def app() -> Hub:
    hub = Hub()

    @hub.on("add")
    def add(peer: Peer, numbers: list[int]) -> int:
        return sum(numbers)

    @hub.on("shout")
    async def shout(peer: Peer, data: Any) -> None:
        await hub.to(data["room"]).emit("shouted", data["text"].upper())

    @hub.on("upload")
    async def upload(peer: Peer, data: bytes) -> bytes:
        await peer.emit("uploaded", data[::-1])
        return data[:2]

    @hub.on("deny")
    def deny(peer: Peer) -> None:
        raise EventError("denied", "no")

    return hub


# -- the tests -----------------------------------------------------------------------


async def test_welcome_lists_peer_ping_interval_and_limits() -> None:
    """The welcome carries exactly the fields PROTOCOL.md §3 lists."""
    async with serve(app()) as served:
        client = await MiniClient.open(served.ws("/ws"))
        assert set(client.welcome) == {"type", "v", "peer", "ping_interval", "limits", "rooms"}
        assert client.welcome["rooms"] == {}
        assert set(client.welcome["limits"]) == {"max_message_size", "max_rooms", "max_pending"}
        await client.close()


async def test_requests_are_answered_by_ack_or_error_with_their_id() -> None:
    """emit with id gets an ack with the handler's value, or an error with the code (§4, §5)."""
    async with serve(app()) as served:
        client = await MiniClient.open(served.ws("/ws"))
        assert await client.request({"type": "emit", "event": "add", "data": [1, 2, 3]}) == 6
        error = await client.request({"type": "emit", "event": "deny"})
        assert (error["type"], error["code"], error["message"]) == ("error", "denied", "no")
        unknown = await client.request({"type": "emit", "event": "nope"})
        assert unknown["code"] == "unknown_event"
        invalid = await client.request({"type": "emit", "event": "add", "data": "x"})
        assert invalid["code"] == "invalid_data" and "path" in invalid["details"]
        assert await client.request({"type": "ping"}) is None
        await client.close()


async def test_unparsable_messages_get_a_bad_message_error() -> None:
    """Garbage and unknown types are answered by bad_message (with the id when it can be
    read); the socket stays (§4)."""
    async with serve(app()) as served:
        client = await MiniClient.open(served.ws("/ws"))
        await client.ws.send("not json")
        assert (await client.event())["code"] == "bad_message"
        await client.send({"type": "teleport", "id": 1})
        error = await client.event()
        assert error["code"] == "bad_message" and error["id"] == 1
        await client.send({"type": "emit", "event": "nope"})  # no id: an error all the same
        assert (await client.event())["code"] == "unknown_event"
        assert await client.request({"type": "emit", "event": "add", "data": [2]}) == 2
        await client.close()


async def test_rooms_events_and_positions() -> None:
    """join acks a position; room events carry room, epoch and consecutive offsets (§7)."""
    async with serve(app()) as served:
        client = await MiniClient.open(served.ws("/ws"))
        position = await client.request({"type": "join", "room": "r"})
        assert position == {"epoch": position["epoch"], "offset": 0}
        for text in ("a", "b"):
            shout = {"room": "r", "text": text}
            await client.request({"type": "emit", "event": "shout", "data": shout})
        first, second = await client.event(), await client.event()
        assert first == {
            "type": "event",
            "room": "r",
            "epoch": position["epoch"],
            "offset": 1,
            "event": "shouted",
            "data": "A",
        }
        assert second["offset"] == 2 and second["data"] == "B"
        assert await client.request({"type": "leave", "room": "r"}) is None
        await client.close()


async def test_binary_emit_ack_and_event() -> None:
    """Bytes travel as length-prefixed JSON header + payload, both ways (§1)."""
    async with serve(app()) as served:
        client = await MiniClient.open(served.ws("/ws"))
        ack = await client.request({"type": "emit", "event": "upload"}, b"\x01\x02\x03")
        assert ack == b"\x01\x02"
        event = await client.event()
        assert (event["event"], event["data"]) == ("uploaded", b"\x03\x02\x01")
        await client.close()


async def test_recovery_replays_missed_events_before_the_ack() -> None:
    """join with since gets the missed events, then an ack with recovered true (§7)."""
    hub = app()
    async with serve(hub) as served:
        first = await MiniClient.open(served.ws("/ws"))
        position = await first.request({"type": "join", "room": "feed"})
        await first.close()  # gone: the next events are missed
        for text in ("x", "y"):
            await hub.to("feed").emit("shouted", text)
        again = await MiniClient.open(served.ws("/ws"))
        since = {"epoch": position["epoch"], "offset": position["offset"]}
        ack = await again.request({"type": "join", "room": "feed", "since": since})
        assert again.trace == ["event", "event", "ack"]  # the replay comes before the ack
        replayed = [await again.event(), await again.event()]
        assert [e["data"] for e in replayed] == ["x", "y"]
        assert [e["offset"] for e in replayed] == [1, 2]
        assert ack == {"epoch": position["epoch"], "offset": 2, "recovered": True}
        stale = await again.request(
            {"type": "join", "room": "feed", "since": {"epoch": "gone", "offset": 1}}
        )
        assert stale["recovered"] is False
        await again.close()


async def test_history_replay() -> None:
    """join with history N replays the last N events before the ack (§7)."""
    hub = app()
    async with serve(hub) as served:
        for text in ("1", "2", "3"):
            await hub.to("log").emit("shouted", text)
        client = await MiniClient.open(served.ws("/ws"))
        ack = await client.request({"type": "join", "room": "log", "history": 2})
        assert ack["offset"] == 3
        assert [(await client.event())["data"] for _ in range(2)] == ["2", "3"]
        await client.close()
