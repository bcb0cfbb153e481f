"""Authentication at the handshake: hooks before the upgrade, identities, refusals."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import (
    TEXT,
    UNIT,
    connect,
    frame,
    raw_connection,
    read_frame,
    read_response,
    serve,
    upgrade_request,
)
from tests.hub.wire import WireClient
from tests.security.conftest import handshake_status
from wirehub import Hub, Limits, Peer, Reject, Request, Timeouts, WebSocket
from wirehub.security.auth import refusal


def user_hub(hook: Any, **kwargs: Any) -> Hub:
    """A hub with ``hook`` as its authenticate hook, ``whoami`` on both endpoint kinds."""
    hub = Hub(**kwargs)
    hub.authenticate(hook)

    @hub.on("whoami")
    def whoami(peer: Peer) -> Any:
        return {"user": peer.user, "request": peer.request.user}

    @hub.websocket("/plain")
    async def plain(ws: WebSocket) -> None:
        await ws.send(json.dumps(ws.user))

    @hub.websocket("/public", auth=False)
    async def public(ws: WebSocket) -> None:
        await ws.send(json.dumps(ws.user))

    return hub


def by_header(request: Request) -> dict[str, str]:
    name = request.headers.get("x-user")
    if name is None:
        raise Reject(401, "who are you?")
    if name == "mallory":
        raise Reject(403, "not you")
    return {"name": name}


async def test_sync_hook_identity_reaches_peer_and_ws() -> None:
    """The hook's return value is ``peer.user``, ``request.user`` and ``ws.user``."""
    async with serve(user_hub(by_header)) as served:
        headers = {"X-User": "ada"}
        async with await WireClient.open(served.ws("/ws"), additional_headers=headers) as client:
            reply = await client.call("whoami")
            assert reply["data"] == {"user": {"name": "ada"}, "request": {"name": "ada"}}
        async with connect(served.ws("/plain"), additional_headers=headers) as ws:
            assert json.loads(await ws.recv()) == {"name": "ada"}


async def test_async_hook_identity() -> None:
    """An async hook is awaited before the upgrade; its identity is the same."""

    async def lookup(request: Request) -> dict[str, str]:
        await asyncio.sleep(0.01)
        return by_header(request)

    async with serve(user_hub(lookup)) as served:
        headers = {"X-User": "bob"}
        async with await WireClient.open(served.ws("/ws"), additional_headers=headers) as client:
            assert (await client.call("whoami"))["data"]["user"] == {"name": "bob"}
        assert (await handshake_status(served.port, "/ws"))[0] == 401


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_refusals_are_http_statuses_before_the_upgrade(asynchronous: bool) -> None:
    """Reject(401) → 401 with WWW-Authenticate; Reject(403) → 403; nothing of the app runs."""
    hook: Any = by_header
    if asynchronous:

        async def hook(request: Request) -> Any:
            return by_header(request)

    hub = user_hub(hook)
    connected: list[str] = []

    @hub.on("connect")
    def on_connect(peer: Peer) -> None:
        connected.append(peer.id)

    async with serve(hub) as served:
        for path in ("/ws", "/plain"):
            status, headers = await handshake_status(served.port, path)
            assert status == 401 and headers["www-authenticate"].startswith("Bearer")
            assert (await handshake_status(served.port, path, "X-User: mallory\r\n"))[0] == 403
        with pytest.raises(InvalidStatus) as info:
            await connect(served.ws("/ws"))
        assert info.value.response.status_code == 401
        assert b"who are you?" in info.value.response.body
    assert connected == []
    assert hub.stats["refused_auth"] == 5


async def test_public_route_skips_authentication() -> None:
    """``@hub.websocket(path, auth=False)`` is not guarded; its ``ws.user`` is None."""
    async with serve(user_hub(by_header)) as served, connect(served.ws("/public")) as ws:
        assert json.loads(await ws.recv()) is None


def test_refusal_maps_odd_statuses_to_403() -> None:
    """A Reject with a status that is not a 4xx/5xx refuses with 403, never a success."""
    assert refusal(Reject(200, "ok?")).status == 403
    assert refusal(Reject(299, "?")).status == 403
    assert refusal(Reject(429, "slow down")).status == 429
    assert refusal(Reject(401, "no")).headers == [("WWW-Authenticate", 'Bearer realm="wirehub"')]


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_crashing_hook_is_a_500(
    asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises something else than Reject refuses with 500 and is logged."""

    def broken(request: Request) -> Any:
        raise RuntimeError("database down")

    async def broken_async(request: Request) -> Any:
        raise RuntimeError("database down")

    async with serve(user_hub(broken_async if asynchronous else broken)) as served:
        assert (await handshake_status(served.port))[0] == 500
    assert "database down" in caplog.text


async def test_a_hook_that_never_answers_is_a_503() -> None:
    """An async hook is bounded by ``Timeouts.auth``: past it, 503."""

    async def stuck(request: Request) -> Any:
        await asyncio.sleep(3600)

    hub = user_hub(stuck, timeouts=Timeouts(auth=UNIT / 10))
    async with serve(hub) as served:
        assert (await handshake_status(served.port))[0] == 503


async def test_bytes_sent_during_an_async_check_are_not_lost() -> None:
    """Frames sent right behind the handshake, while the hook runs, are processed after it."""
    gate = asyncio.Event()

    async def slow(request: Request) -> str:
        await gate.wait()
        return "ada"

    hub = user_hub(slow)
    async with serve(hub) as served, raw_connection(served.port) as (reader, writer):
        ping = frame(TEXT, b'{"type":"ping","id":1}')
        writer.write(upgrade_request("/ws") + ping)  # in the handshake's own read
        await writer.drain()
        await asyncio.sleep(UNIT / 20)
        writer.write(frame(TEXT, b'{"type":"ping","id":2}'))  # while reading is paused
        await writer.drain()
        await asyncio.sleep(UNIT / 20)
        gate.set()
        assert (await read_response(reader, head_only=True)).status == 101
        welcome = json.loads((await read_frame(reader))[1])
        assert welcome["type"] == "welcome"
        answers = [json.loads((await read_frame(reader))[1]) for _ in range(2)]
        assert answers == [{"type": "ack", "id": n, "data": None} for n in (1, 2)]


async def test_refused_handshakes_release_their_capacity() -> None:
    """With ``max_connections=1``, refused authentications never use up the one slot."""
    hub = user_hub(by_header, limits=Limits(max_connections=1))
    async with serve(hub) as served:
        for _ in range(5):
            assert (await handshake_status(served.port))[0] == 401
        assert hub.gate.open == 0
        headers = {"X-User": "ada"}
        async with await WireClient.open(served.ws("/ws"), additional_headers=headers):
            assert hub.gate.open == 1
            assert (await handshake_status(served.port, "/ws", "X-User: bob\r\n"))[0] == 503
        for _ in range(int(20 * UNIT)):
            if hub.gate.open == 0:
                break
            await asyncio.sleep(0.05)
        assert hub.gate.open == 0


async def test_shutdown_during_an_async_check() -> None:
    """A handshake whose hook is still running when the server stops gets a 503, not a socket."""
    started = asyncio.Event()
    gate = asyncio.Event()

    async def slow(request: Request) -> str:
        started.set()
        await gate.wait()
        return "ada"

    hub = user_hub(slow)
    async with serve(hub) as served, raw_connection(served.port) as (reader, writer):
        writer.write(upgrade_request("/ws"))
        await asyncio.wait_for(started.wait(), UNIT)
        stopping = asyncio.ensure_future(served.server.shutdown(timeout=UNIT))
        await asyncio.sleep(UNIT / 20)
        gate.set()
        assert (await read_response(reader, head_only=True)).status == 503
        await stopping
