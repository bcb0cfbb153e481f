"""SyncClient: blocking calls from plain code, handlers in the client's own thread."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from tests.client.conftest import serve_in_thread
from tests.conftest import TICK, UNIT
from wirehub import CallError, ConnectionClosed, Hub, SyncClient
from wirehub.hub.peer import Peer


def chat_hub() -> Hub:
    hub = Hub()

    @hub.on("chat")
    async def chat(peer: Peer, text: str) -> dict[str, bool]:
        await hub.to("lobby").emit("chat", {"from": peer.id, "text": text}, exclude=peer)
        return {"ok": True}

    @hub.on("fail")
    def fail(peer: Peer) -> None:
        raise ValueError("boom")

    return hub


def test_two_sync_clients_chat_through_a_hub() -> None:
    """Two SyncClients join a room and exchange messages with blocking calls."""
    with serve_in_thread(chat_hub()) as url:
        alice_inbox: queue.Queue[Any] = queue.Queue()
        bob_inbox: queue.Queue[Any] = queue.Queue()
        threads: list[threading.Thread] = []

        def to_bob(data: Any) -> None:
            threads.append(threading.current_thread())
            bob_inbox.put(data)

        with SyncClient(url) as alice, SyncClient(url) as bob:
            alice.on("chat", alice_inbox.put)
            bob.on("chat", to_bob)
            assert alice.join("lobby")["offset"] == 0
            bob.join("lobby")
            assert alice.rooms == bob.rooms == {"lobby"}
            assert alice.call("chat", "hi bob") == {"ok": True}
            assert bob_inbox.get(timeout=UNIT) == {"from": alice.id, "text": "hi bob"}
            bob.emit("chat", "hi alice")
            assert alice_inbox.get(timeout=UNIT) == {"from": bob.id, "text": "hi alice"}
            assert 0 < alice.ping() < UNIT
            bob.leave("lobby")
            assert bob.rooms == frozenset()
        assert threads and threads[0] is not threading.current_thread()
        assert not alice.connected and not bob.connected


def test_sync_errors_are_raised_in_the_caller() -> None:
    """A refused call raises CallError in the calling thread; the client stays usable."""
    with serve_in_thread(chat_hub()) as url, SyncClient(url) as client:
        with pytest.raises(CallError) as raised:
            client.call("fail")
        assert raised.value.code == "internal_error"
        assert client.call("chat", "still here") == {"ok": True}


def test_blocking_methods_refuse_to_run_in_the_client_thread() -> None:
    """Calling a blocking method from a handler raises RuntimeError instead of deadlocking."""
    with serve_in_thread(chat_hub()) as url:
        errors: queue.Queue[BaseException] = queue.Queue()
        with SyncClient(url) as client:

            def handler(data: Any) -> None:
                try:
                    client.emit("chat", "from a handler")
                except RuntimeError as exc:
                    errors.put(exc)

            client.on("chat", handler)
            client.join("lobby")
            with SyncClient(url) as other:
                other.call("chat", "trigger")
                assert isinstance(errors.get(timeout=UNIT), RuntimeError)


def test_use_before_connect_and_after_close_raises_connection_closed() -> None:
    """Without a running connection, blocking methods raise ConnectionClosed."""
    with serve_in_thread(chat_hub()) as url:
        client = SyncClient(url)
        with pytest.raises(ConnectionClosed):
            client.emit("chat", "too early")
        client.connect()
        assert client.connected and client.id is not None
        client.close()
        with pytest.raises(ConnectionClosed):
            client.call("chat", "too late")
        client.close()  # twice is harmless


def test_a_closed_sync_client_can_connect_again() -> None:
    """After close(), connect() starts a new thread and a new connection."""
    with serve_in_thread(chat_hub()) as url:
        client = SyncClient(url).connect()
        first = client.id
        with pytest.raises(TimeoutError):
            client.wait_closed(timeout=TICK)  # still connected
        client.close()
        with client:
            assert client.connected and client.id != first
            assert client.call("chat", "again") == {"ok": True}
