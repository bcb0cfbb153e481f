"""Server → client calls: ``await peer.call(...)`` answered by a client handler (real sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.client.conftest import serve_in_thread
from tests.conftest import TICK, UNIT, serve
from wirehub import CallError, CallTimeout, ConfigError, ConnectionClosed, EventError, Hub, Peer
from wirehub.client import Client, EventInfo, SyncClient, connect


def asking_hub(outcomes: list[Any] | None = None) -> Hub:
    """``ask {event, data, timeout?}`` calls the client back and returns what it answered."""
    hub = Hub()

    @hub.on("ask")
    async def ask(peer: Peer, question: dict[str, Any]) -> Any:
        try:
            data = question.get("data")
            if question.get("binary"):
                data = data.encode()
            answer = await peer.call(question["event"], data, timeout=question.get("timeout", UNIT))
            return answer if isinstance(answer, bytes) else {"answer": answer}
        except CallError as exc:  # CallTimeout included
            return {"error": exc.code, "message": exc.message, "details": exc.details}

    @hub.on("connect")
    async def early(peer: Peer) -> None:
        if outcomes is not None:
            with pytest.raises(ConfigError):
                await peer.call("too early")
            outcomes.append("refused before the welcome")

    return hub


async def test_a_client_handler_answers_the_server() -> None:
    """Plain and coroutine handlers answer with their value; bytes come back as bytes."""
    async with serve(asking_hub()) as served, connect(served.ws("/ws")) as client:

        @client.on("add")
        def add(numbers: list[int], info: EventInfo) -> dict[str, Any]:
            return {"sum": sum(numbers), "event": info.event, "room": info.room}

        @client.on("later")
        async def later(data: str) -> str:
            await asyncio.sleep(0)
            return data.upper()

        client.on("flip", lambda data: data[::-1])
        client.on("add", lambda numbers: "a second handler does not answer")
        ask = {"event": "add", "data": [1, 2, 3]}
        assert await client.call("ask", ask) == {"answer": {"sum": 6, "event": "add", "room": None}}
        assert await client.call("ask", {"event": "later", "data": "hi"}) == {"answer": "HI"}
        assert await client.call("ask", {"event": "flip", "data": "abc"}) == {"answer": "cba"}
        flipped = await client.call("ask", {"event": "flip", "data": "abc", "binary": True})
        assert flipped == b"cba"


async def test_errors_come_back_as_call_errors() -> None:
    """EventError keeps its code; no handler is unknown_event; a crash is internal_error."""
    async with serve(asking_hub()) as served, connect(served.ws("/ws")) as client:

        @client.on("refuse")
        def refuse() -> None:
            raise EventError("busy", "not now", {"retry": 5})

        @client.on("crash")
        async def crash() -> None:
            raise RuntimeError("a bug in the client")

        refused = await client.call("ask", {"event": "refuse"})
        assert refused == {"error": "busy", "message": "not now", "details": {"retry": 5}}
        unknown = await client.call("ask", {"event": "nobody"})
        assert unknown["error"] == "unknown_event"
        crashed = await client.call("ask", {"event": "crash"})
        assert crashed == {"error": "internal_error", "message": "internal error", "details": None}
        with pytest.raises(CallError, match="internal_error"):  # ConfigError on the server:
            await client.call("ask", {"event": "connect"})  # a name the clients keep


async def test_a_call_times_out_or_fails_with_the_connection() -> None:
    """No answer in time is CallTimeout; a connection that closes first is ConnectionClosed."""
    hub = asking_hub()
    waiting: asyncio.Queue[Any] = asyncio.Queue()

    @hub.on("hold")
    async def hold(peer: Peer) -> None:
        waiting.put_nowait(asyncio.ensure_future(peer.call("never", timeout=None)))

    async with serve(hub) as served, connect(served.ws("/ws")) as client:
        client.on("never", lambda: asyncio.get_running_loop().create_future())  # never answers
        slow = await client.call("ask", {"event": "never", "timeout": TICK})
        assert slow["error"] == "timeout"
        await client.call("hold")
        pending = await asyncio.wait_for(waiting.get(), UNIT)
        await client.close()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(pending, UNIT)
        assert not isinstance(pending.exception(), CallTimeout)


async def test_a_call_from_the_connect_handler_is_refused() -> None:
    """Before the welcome the client cannot answer: ConfigError, and the connection goes on."""
    outcomes: list[Any] = []
    async with serve(asking_hub(outcomes)) as served, connect(served.ws("/ws")) as client:
        assert await client.ping() >= 0
    assert outcomes == ["refused before the welcome"]


def test_a_sync_client_answers_from_its_thread() -> None:
    """SyncClient handlers answer too (they run in the client's thread)."""
    with serve_in_thread(asking_hub()) as url, SyncClient(url) as client:
        client.on("twice", lambda n: n * 2)
        assert client.call("ask", {"event": "twice", "data": 21}) == {"answer": 42}


async def test_an_unanswerable_value_is_an_internal_error() -> None:
    """A handler returning what JSON cannot carry answers internal_error (not a timeout)."""
    async with serve(asking_hub()) as served, Client(served.ws("/ws")) as client:
        client.on("weird", lambda: object())
        assert (await client.call("ask", {"event": "weird"}))["error"] == "internal_error"
