"""A tiny protocol-v1 client for hub tests, on the independent ``websockets`` client.

It speaks docs/PROTOCOL.md with plain ``json`` so the server's codec is not
trusted to test itself.
"""

from __future__ import annotations

import abc
import asyncio
import json
import struct
from typing import Any

from tests.conftest import UNIT, connect


class Requests(abc.ABC):
    """Requests on top of ``send`` and ``recv`` (any transport): ids, and waiting for answers."""

    _next_id = 0

    @abc.abstractmethod
    async def send(self, message: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    async def recv(self, timeout: float = UNIT) -> dict[str, Any]: ...

    async def request(self, message: dict[str, Any], timeout: float = UNIT) -> dict[str, Any]:
        """Send ``message`` with a fresh id; return its ack or error (skipping events).

        ``timeout`` bounds each wait for a message: more for one of many clients
        asking at once, whose answers all come out of one event loop.
        """
        self._next_id += 1
        await self.send({**message, "id": self._next_id})
        while True:
            reply = await self.recv(timeout)
            if reply["type"] in ("ack", "error") and reply.get("id") == self._next_id:
                return reply

    async def call(self, event: str, data: Any = None) -> dict[str, Any]:
        return await self.request({"type": "emit", "event": event, "data": data})

    async def call_excluded(
        self, event: str, data: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Call ``event``, whose handler emits to a room with ``exclude`` naming this client:
        its answer, and the ``skip`` this client gets for that event (before or after the
        answer: through a broker like Redis, either may come first; None after an error)."""
        self._next_id += 1
        await self.send({"type": "emit", "event": event, "data": data, "id": self._next_id})
        answer: dict[str, Any] | None = None
        skip = None
        while answer is None or (answer["type"] == "ack" and skip is None):
            message = await self.recv()
            if message["type"] == "skip":
                skip = message
            elif message["type"] in ("ack", "error") and message.get("id") == self._next_id:
                answer = message
        return answer, skip

    async def join(self, room: str, *, timeout: float = UNIT, **extra: Any) -> dict[str, Any]:
        reply = await self.request({"type": "join", "room": room, **extra}, timeout)
        assert reply["type"] == "ack", reply
        return reply


class WireClient(Requests):
    """One connection to ``/ws``: send protocol messages, read them back decoded."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> WireClient:
        ws = await connect(url, **kwargs)
        client = cls(ws)
        client.welcome = await client.recv()
        assert client.welcome["type"] == "welcome", client.welcome
        return client

    @property
    def id(self) -> str:
        return str(self.welcome["peer"])

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, timeout: float = UNIT) -> dict[str, Any]:
        """The next message, decoded; a binary one gets its payload under ``"_payload"``."""
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(raw, bytes):
            (length,) = struct.unpack_from("!I", raw)
            message: dict[str, Any] = json.loads(raw[4 : 4 + length])
            message["_payload"] = raw[4 + length :]
            return message
        decoded: dict[str, Any] = json.loads(raw)
        return decoded

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> WireClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def expect_nothing(client: WireClient, timeout: float = UNIT) -> None:
    """Prove ``client`` has received nothing: the next message is the answer to a ping.

    Everything for one connection is written in order, so a message sent to
    ``client`` before the ping would arrive before the ping's ack.
    """
    await client.send({"type": "ping", "id": 999_999})
    reply = await client.recv(timeout)
    assert reply == {"type": "ack", "id": 999_999, "data": None}, reply
