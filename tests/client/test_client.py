"""The asyncio Client against a real hub on loopback: events, calls, rooms, binary, callbacks."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.client.conftest import Inbox
from tests.conftest import TICK, UNIT, serve
from wirehub import (
    CallError,
    CallTimeout,
    ConnectionClosed,
    EventError,
    HandshakeError,
    Hub,
    Limits,
    Reject,
    connect,
)
from wirehub.client import Client, EventInfo, PresenceChange, State
from wirehub.hub.peer import Peer
from wirehub.security.jwt import JWTAuth


class ChatHub(Hub):
    """A Hub that records handshake headers and holds ``slow`` calls until ``release``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.release = asyncio.Event()
        self.headers: list[Any] = []


def chat_hub(**kwargs: Any) -> ChatHub:
    """A hub with the handlers the tests below exercise."""
    hub = ChatHub(**kwargs)

    @hub.on("connect")
    def on_connect(peer: Peer, request: Any) -> None:
        hub.headers.append(request.headers)

    @hub.on("echo")
    def echo(peer: Peer, data: Any) -> Any:
        return data

    @hub.on("reverse")
    def reverse(peer: Peer, data: bytes) -> bytes:
        return data[::-1]

    @hub.on("refuse")
    def refuse(peer: Peer, data: Any) -> None:
        raise EventError("not_today", "come back tomorrow", {"when": "tomorrow"})

    @hub.on("slow")
    async def slow(peer: Peer) -> str:
        await hub.release.wait()
        return "done"

    @hub.on("say")
    async def say(peer: Peer, data: Any) -> None:
        await hub.to(data["room"]).emit("said", data["what"])

    @hub.on("whisper")
    async def whisper(peer: Peer, data: Any) -> None:
        await peer.emit("whispered", data)

    return hub


async def test_emit_reaches_the_handler_and_events_reach_on() -> None:
    """An emit runs the server handler; an event the server sends runs the client handler."""
    async with serve(chat_hub()) as served, connect(served.ws("/ws")) as client:
        inbox = Inbox()
        client.on("whispered", inbox.put)
        await client.emit("whisper", {"text": "psst"})
        assert await inbox.get() == {"text": "psst"}


async def test_decorator_form_and_two_argument_handlers_get_event_info() -> None:
    """``@client.on(name)`` registers; a (data, info) handler gets an EventInfo."""
    async with serve(chat_hub()) as served, connect(served.ws("/ws")) as client:
        inbox = Inbox()

        @client.on("whispered")
        def handler(data: Any, info: EventInfo) -> None:
            inbox.put_info(data, info)

        await client.emit("whisper", 1)
        assert await inbox.get() == (1, EventInfo("whispered"))


async def test_async_handlers_run_as_tasks() -> None:
    """A coroutine handler is run, and may call back into the client."""
    async with serve(chat_hub()) as served, connect(served.ws("/ws")) as client:
        inbox = Inbox()

        async def handler(data: Any) -> None:
            inbox.put(await client.call("echo", data))

        client.on("whispered", handler)
        await client.emit("whisper", "hello")
        assert await inbox.get() == "hello"


async def test_off_removes_a_handler() -> None:
    """After ``off``, the handler no longer receives the event."""
    async with serve(chat_hub()) as served, connect(served.ws("/ws")) as client:
        removed, kept = Inbox(), Inbox()
        client.on("whispered", removed.put)
        client.on("whispered", kept.put)
        client.off("whispered", removed.put)
        await client.emit("whisper", 1)
        assert await kept.get() == 1
        assert removed.empty()


async def test_call_returns_the_ack_data() -> None:
    """``call`` returns what the server handler returned."""
    async with serve(chat_hub()) as served, connect(served.ws("/ws")) as client:
        assert await client.call("echo", {"n": [1, 2]}) == {"n": [1, 2]}
        assert await client.call("echo") is None


async def test_call_error_carries_code_message_and_details() -> None:
    """An error answer raises CallError with the server's code, message and details."""
    async with serve(chat_hub()) as served, connect(served.ws("/ws")) as client:
        with pytest.raises(CallError) as raised:
            await client.call("refuse", 1)
        assert raised.value.code == "not_today"
        assert raised.value.message == "come back tomorrow"
        assert raised.value.details == {"when": "tomorrow"}
        with pytest.raises(CallError) as unknown:
            await client.call("no-such-event")
        assert unknown.value.code == "unknown_event"


async def test_call_timeout() -> None:
    """A handler slower than the timeout makes ``call`` raise CallTimeout; the client goes on."""
    hub = chat_hub()
    async with serve(hub) as served, connect(served.ws("/ws")) as client:
        try:
            with pytest.raises(CallTimeout):
                await client.call("slow", timeout=TICK)
            assert await client.call("echo", 2) == 2
        finally:
            hub.release.set()


async def test_join_leave_and_room_events() -> None:
    """Joined rooms deliver their events with positions; after leave they do not."""
    async with serve(chat_hub()) as served, connect(served.ws("/ws")) as client:
        inbox = Inbox()
        client.on("said", inbox.put_info)
        ack = await client.join("lobby")
        assert set(ack) == {"epoch", "offset"}
        assert client.rooms == {"lobby"}
        await client.call("say", {"room": "lobby", "what": "hi"})
        data, info = await inbox.get()
        assert data == "hi"
        assert info == EventInfo("said", "lobby", ack["epoch"], ack["offset"] + 1)
        await client.leave("lobby")
        assert client.rooms == frozenset()
        await client.call("say", {"room": "lobby", "what": "gone"})
        await client.call("whisper", "barrier")  # ordered after the room event, if any
        assert inbox.empty()


async def test_join_with_history_replays_before_returning() -> None:
    """``join(history=N)`` has the last N events delivered by the time it returns."""
    hub = chat_hub()
    async with serve(hub) as served, connect(served.ws("/ws")) as client:
        for n in range(5):
            await hub.to("news").emit("said", n)
        got: list[Any] = []
        client.on("said", got.append)
        await client.join("news", history=3)
        assert got == [2, 3, 4]


async def test_binary_payloads_both_ways() -> None:
    """Bytes go out in a binary emit, and come back as a binary ack and a binary event."""
    async with serve(chat_hub()) as served, connect(served.ws("/ws")) as client:
        assert await client.call("reverse", b"\x00\x01\xff") == b"\xff\x01\x00"
        inbox = Inbox()
        client.on("said", inbox.put)
        await client.join("bin")
        await client.call("say", {"room": "bin", "what": "x"})
        assert await inbox.get() == "x"
        await served.server.hub.to("bin").emit("said", b"\xde\xad")
        assert await inbox.get() == b"\xde\xad"


async def test_ping_measures_a_round_trip() -> None:
    """The application ping is answered; its round-trip time is a small positive number."""
    async with serve(chat_hub()) as served, connect(served.ws("/ws")) as client:
        assert 0 < await client.ping() < UNIT


async def test_unsolicited_errors_go_to_the_error_callback() -> None:
    """An error answering a message without id reaches ``on("error")`` as an EventError."""
    async with serve(chat_hub()) as served, connect(served.ws("/ws")) as client:
        inbox = Inbox()
        client.on("error", inbox.put)
        await client.emit("no-such-event")
        error = await inbox.get()
        assert isinstance(error, EventError)
        assert error.code == "unknown_event"


async def test_presence_callback() -> None:
    """With presence on, a member joining our room is announced to ``on("presence")``."""
    async with (
        serve(chat_hub(presence=True)) as served,
        connect(served.ws("/ws")) as alice,
        connect(served.ws("/ws")) as bob,
    ):
        inbox = Inbox()
        alice.on("presence", inbox.put)
        await alice.join("room")
        ack = await bob.join("room")
        assert {member["id"] for member in ack["members"]} == {alice.id, bob.id}
        change = await inbox.get()
        assert change == PresenceChange("room", joined={"id": bob.id, "info": {}})


async def test_handler_exceptions_are_logged_and_the_client_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failing handler is logged; later events still reach the other handlers."""
    async with serve(chat_hub()) as served, connect(served.ws("/ws")) as client:
        inbox = Inbox()

        def broken(data: Any) -> None:
            raise RuntimeError("handler bug")

        async def broken_async(data: Any) -> None:
            raise RuntimeError("async handler bug")

        client.on("whispered", broken)
        client.on("whispered", broken_async)
        client.on("whispered", inbox.put)
        with caplog.at_level(logging.ERROR, logger="wirehub.client"):
            await client.emit("whisper", 1)
            assert await inbox.get() == 1
            await client.emit("whisper", 2)
            assert await inbox.get() == 2
            assert await client.call("echo", "still fine") == "still fine"
        assert "handler bug" in caplog.text


async def test_lifecycle_attributes_and_callbacks() -> None:
    """id, connected and state follow the connection; connect/disconnect callbacks fire."""
    async with serve(chat_hub()) as served:
        client = Client(served.ws("/ws"))
        connected, disconnected = Inbox(), Inbox()
        client.on("connect", connected.put)
        client.on("disconnect", disconnected.put)
        assert (client.state, client.connected, client.id) == (State.CLOSED, False, None)
        await client
        assert client.connected and client.id is not None
        assert await connected.get() is None
        await client.close()
        why = await disconnected.get()
        assert isinstance(why, ConnectionClosed) and why.code == 1000
        assert client.state is State.CLOSED
        assert (await client.wait_closed()).code == 1000
        await client.close()  # twice is harmless


async def test_token_and_headers_reach_the_connect_handler() -> None:
    """``token`` is sent as ``Authorization: Bearer``, next to any extra ``headers``."""
    hub = chat_hub()
    options: dict[str, Any] = {"token": "s3cret", "headers": {"X-App": "test"}}
    async with serve(hub) as served, connect(served.ws("/ws"), **options):
        [headers] = hub.headers
        assert headers.get("authorization") == "Bearer s3cret"
        assert headers.get("x-app") == "test"


async def test_sending_while_closed_raises_connection_closed() -> None:
    """emit, call and join raise ConnectionClosed when the client is not connected."""
    async with serve(chat_hub()) as served:
        client = Client(served.ws("/ws"))
        with pytest.raises(ConnectionClosed):
            await client.emit("echo")
        await client.connect()
        await client.close()
        with pytest.raises(ConnectionClosed):
            await client.call("echo")
        with pytest.raises(ConnectionClosed):
            await client.join("lobby")


async def test_too_big_messages_are_refused_before_sending() -> None:
    """A message over the server's max_message_size raises locally; the connection stays."""
    hub = chat_hub(limits=Limits(max_message_size=1000))
    async with serve(hub) as served, connect(served.ws("/ws")) as client:
        assert client.welcome is not None and client.welcome.max_message_size == 1000
        with pytest.raises(EventError) as raised:
            await client.emit("echo", "x" * 2000)
        assert raised.value.code == "limit_exceeded"
        assert await client.call("echo", "small") == "small"


async def test_unencodable_data_raises_type_error() -> None:
    """Data JSON cannot carry raises TypeError, and nothing is sent."""
    async with serve(chat_hub()) as served, connect(served.ws("/ws")) as client:
        with pytest.raises(TypeError):
            await client.emit("echo", object())
        assert await client.call("echo", 1) == 1


async def test_a_refused_connection_raises_connection_closed() -> None:
    """A connect handler raising Reject makes ``connect`` raise ConnectionClosed with its code."""
    hub = Hub()

    @hub.on("connect")
    def refuse(peer: Peer) -> None:
        raise Reject(code=4001, reason="who are you?")

    async with serve(hub) as served:
        with pytest.raises(ConnectionClosed) as raised:
            await connect(served.ws("/ws"))
        assert (raised.value.code, raised.value.reason) == (4001, "who are you?")


async def test_handshake_failures_raise_handshake_error() -> None:
    """A path without an endpoint (HTTP 404) or a closed port raises HandshakeError."""
    async with serve(chat_hub()) as served:
        with pytest.raises(HandshakeError) as raised:
            await connect(served.ws("/nowhere"))
        assert raised.value.status == 404
        port = served.port
    with pytest.raises(HandshakeError):
        await connect(f"ws://127.0.0.1:{port}/ws", open_timeout=UNIT)


@pytest.mark.parametrize("in_message", [True, False])
async def test_a_tokenless_client_is_told_at_once_that_a_token_is_missing(in_message: bool) -> None:
    """Against a JWT-protected hub, a client without a token fails within UNIT and says why.

    (The hub would wait 10 s for an ``auth`` message; with tokens in messages
    refused, it answers the handshake 401.)"""
    hub = Hub()
    hub.authenticate(JWTAuth("s" * 32, allow_message=in_message))
    hint = "this client sent no token: if the server requires one, pass token= or get_token="
    async with serve(hub) as served:
        client = Client(served.ws("/ws"))
        if in_message:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(client.connect(), UNIT)
            assert closed.value.code == 4001 and closed.value.__notes__ == [hint]
        else:
            with pytest.raises(HandshakeError) as refused:
                await asyncio.wait_for(client.connect(), UNIT)
            assert refused.value.status == 401 and hint in str(refused.value)


def test_a_handler_that_needs_more_arguments_is_refused_when_registered() -> None:
    """A mistaken signature fails loudly at ``on()``, not silently at the first event."""
    client = Client("ws://127.0.0.1:1/ws")
    with pytest.raises(TypeError, match="it requires sid, data, info"):
        client.on("chat", lambda sid, data, info: None)
    with pytest.raises(TypeError, match="requires data, kind"):
        client.on("chat", lambda data, *, kind: None)
    with pytest.raises(TypeError, match="one argument or none"):
        client.on("gap", lambda gap, extra: None)
    client.on("chat", lambda data, info, extra=None: None)  # optional extras are fine
    client.on("chat", print)
