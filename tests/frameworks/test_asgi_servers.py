"""``uvicorn app:hub``: the hub as the whole ASGI application, with a real uvicorn
(and, for the basics, a real hypercorn)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

import wirehub
from tests.conftest import (
    TEXT,
    UNIT,
    connect,
    frame,
    http,
    raw_connection,
    read_frame,
    read_response,
    upgrade_request,
)
from tests.frameworks.hosts import SERVERS, client_on_each_worker, get, uvicorn
from tests.hub.fallback_wire import PollClient

APP = "tests.frameworks.apps:hub"


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
async def test_lifespan_runs_hooks_and_background_task(server: str) -> None:
    """Lifespan startup runs the hooks; the background task delivers; SIGTERM runs shutdown."""
    async with SERVERS[server](APP) as host:
        async with wirehub.connect(host.ws("/ws")) as client:
            ticks: asyncio.Queue[int] = asyncio.Queue()
            client.on("tick", ticks.put_nowait)
            await client.join("ticks")
            first = await asyncio.wait_for(ticks.get(), UNIT)
            assert await asyncio.wait_for(ticks.get(), UNIT) == first + 1
            assert await client.call("whoami") == "anyone"
        _, stderr = await host.stop()
    assert "test app: startup hooks ran" in stderr
    assert "test app: shutdown hooks ran" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
async def test_plain_endpoint_and_limits(server: str) -> None:
    """A plain endpoint echoes text and binary; a message over max_message_size closes 1009."""
    async with SERVERS[server](APP) as host, connect(host.ws("/echo")) as ws:
        await ws.send("text")
        assert await asyncio.wait_for(ws.recv(), UNIT) == "text"
        await ws.send(b"\x00\xff")
        assert await asyncio.wait_for(ws.recv(), UNIT) == b"\x00\xff"
        await ws.send("x" * 2000)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), UNIT)
        assert ws.close_code == 1009


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
async def test_authentication_refuses_with_its_status(server: str) -> None:
    """An authenticate hook's Reject(401) is the handshake's HTTP answer, as natively."""
    async with SERVERS[server](APP) as host:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(host.ws("/echo?token=bad")):
                pass
        assert refused.value.response.status_code == 401


async def test_http_api_and_cors() -> None:
    """POST /api/emit reaches a client; an allowed origin gets CORS headers and a preflight."""
    async with uvicorn(APP) as host, wirehub.connect(host.ws("/ws")) as client:
        got: asyncio.Queue[str] = asyncio.Queue()
        client.on("news", got.put_nowait)
        await client.join("lobby")
        body = json.dumps({"event": "news", "data": "via api", "room": "lobby"}).encode()
        response = await http(
            host.port,
            b"POST /api/emit HTTP/1.1\r\nHost: x\r\nOrigin: http://page.example\r\n"
            b"Authorization: Bearer secret-key\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
        )
        assert response.status == 200
        assert response.headers["access-control-allow-origin"] == "http://page.example"
        assert await asyncio.wait_for(got.get(), UNIT) == "via api"
        preflight = await http(
            host.port,
            b"OPTIONS /api/emit HTTP/1.1\r\nHost: x\r\nOrigin: http://page.example\r\n"
            b"Access-Control-Request-Method: POST\r\n"
            b"Access-Control-Request-Headers: authorization, content-type\r\n\r\n",
        )
        assert preflight.status == 204
        assert preflight.headers["access-control-allow-methods"] == "POST"
        assert preflight.headers["access-control-allow-headers"] == "authorization, content-type"
        other = await http(
            host.port, b"GET /hello HTTP/1.1\r\nHost: x\r\nOrigin: http://other.example\r\n\r\n"
        )
        assert other.body == b"hello from /hello"
        assert "access-control-allow-origin" not in other.headers


async def test_streamed_responses_and_their_end() -> None:
    """A streamed route arrives whole (chunked); a client leaving a stream ends its generator."""
    async with uvicorn(APP) as host:
        assert await get(host.url + "/stream") == (200, b"one two three")
        async with raw_connection(host.port) as (reader, writer):
            writer.write(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"first" in await asyncio.wait_for(reader.readuntil(b"first"), UNIT)
        assert host.process.stderr is not None
        async with asyncio.timeout(5 * UNIT):
            while b"test app: stream closed" not in await host.process.stderr.readline():
                pass


async def test_a_client_that_stops_reading_is_cut_off_alone() -> None:
    """Under uvicorn too, a member that does not read is closed (4008); the others get all."""
    async with uvicorn(APP) as host, wirehub.connect(host.ws("/ws")) as reader:
        got: list[int] = []
        reader.on("big", lambda data: got.append(data["n"]))
        await reader.join("flood")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # not reading shows soon
        sock.connect(("127.0.0.1", host.port))
        stalled, writer = await asyncio.open_connection(sock=sock)
        try:
            writer.write(upgrade_request("/ws"))
            assert (await read_response(stalled, head_only=True)).status == 101
            writer.write(frame(TEXT, b'{"type": "join", "room": "flood", "id": 1}'))
            while b'"ack"' not in (await read_frame(stalled))[1]:
                pass  # the welcome, then the join's ack: from now on nothing is read
            assert await reader.call("flood", 2000, timeout=20 * UNIT) == 2000
            async with asyncio.timeout(5 * UNIT):
                while (health := await healthz(host.port))["peers"] != 1:
                    await asyncio.sleep(0.05)
        finally:
            writer.close()
        assert health["stats"]["slow_consumers"] == 1
        async with asyncio.timeout(10 * UNIT):
            while len(got) < 2000:
                await asyncio.sleep(0.05)
        assert got == list(range(2000))


async def healthz(port: int) -> dict[str, Any]:
    response = await http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    result: dict[str, Any] = json.loads(response.body)
    return result


async def test_uvicorn_workers_share_rooms_through_redis(redis_url: str, prefix: str) -> None:
    """``uvicorn --workers 2``, RedisBroker: each worker runs the lifespan; rooms span both."""
    env = {"WIREHUB_TEST_REDIS": redis_url, "WIREHUB_TEST_PREFIX": prefix}
    async with uvicorn(APP, "--workers", "2", env=env) as host:
        by_pid = await client_on_each_worker(host.ws("/ws"), "pid")
        try:
            a, b = by_pid.values()
            got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            a.on("big", got.put_nowait)
            await a.join("flood")
            assert await b.call("flood", 1) == 1
            assert (await asyncio.wait_for(got.get(), UNIT))["n"] == 0
        finally:
            for client in by_pid.values():
                await client.close()
        _, stderr = await host.stop()
    assert stderr.count("test app: startup hooks ran") == 2
    assert stderr.count("test app: shutdown hooks ran") == 2


@pytest.mark.parametrize("stream", [False, True], ids=["long-polling", "streaming"])
async def test_http_fallback_under_uvicorn(stream: bool) -> None:
    """The HTTP fallback's sessions work under uvicorn: welcome, calls, room events."""
    async with (
        uvicorn(APP) as host,
        await PollClient.open(host.url + "/ws", stream=stream) as client,
        wirehub.connect(host.ws("/ws")) as other,
    ):
        assert (await client.call("whoami"))["data"] == "anyone"
        await client.join("flood")
        assert await other.call("flood", 2) == 2
        events = [await client.recv(), await client.recv()]
        assert [(e["event"], e["data"]["n"]) for e in events] == [("big", 0), ("big", 1)]


async def test_without_a_lifespan_the_hub_starts_on_its_first_request() -> None:
    """Mounted with no lifespan handed over, the hub starts when first used, and says so."""
    app = "tests.frameworks.apps:starlette_without_lifespan"
    async with uvicorn(app, "--factory") as host:
        async with wirehub.connect(host.ws("/rt/ws")) as client:
            assert await client.call("whoami") == "anyone"
        _, stderr = await host.stop()
    assert "wirehub got a request before any ASGI lifespan startup" in stderr
    assert stderr.count("test app: startup hooks ran") == 1
    assert "test app: shutdown hooks ran" not in stderr


async def test_shutdown_lets_user_code_finish_then_cancels_the_rest() -> None:
    """SIGTERM to uvicorn: a disconnect handler, a handler in flight and a plain endpoint's
    cleanup (0.5 s each) finish before the shutdown hooks run, as on the native server; a
    handler that never returns is cancelled at the hub's shutdown deadline (2 s)."""
    async with uvicorn(APP) as host:
        leaving = await wirehub.connect(host.ws("/ws?linger=1"), reconnect=False)
        caller = await wirehub.connect(host.ws("/ws"), reconnect=False)
        started: asyncio.Queue[str] = asyncio.Queue()
        for event in ("napping", "stuck"):
            caller.on(event, lambda *_, event=event: started.put_nowait(event))
        calls = [asyncio.ensure_future(caller.call(name)) for name in ("nap", "stuck")]
        async with connect(host.ws("/linger")) as plain:
            assert await asyncio.wait_for(plain.recv(), UNIT) == "ready"
            assert {await asyncio.wait_for(started.get(), UNIT) for _ in calls} == {
                "napping",
                "stuck",
            }
            began = time.monotonic()
            _, stderr = await host.stop()
            took = time.monotonic() - began
        await asyncio.gather(*calls, return_exceptions=True)
        await leaving.close()
        await caller.close()
    hooks = stderr.find("test app: shutdown hooks ran")
    assert hooks > 0, stderr
    for line in ("disconnect handler finished", "nap finished", "plain handler finished"):
        assert 0 < stderr.find(f"test app: {line}") < hooks, stderr
    assert 0 < stderr.find("test app: stuck handler cancelled") < hooks, stderr
    assert took < 2.0 + 3 * UNIT


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
async def test_plain_websocket_attributes(server: str) -> None:
    """Under an ASGI server a plain endpoint's ``ws`` knows its client's address, its id
    and subprotocol and the client's close code; ``ws.ping()`` raises a ``ConfigError``
    that says why (ASGI has no ping message) and ``latency`` stays 0.0."""
    async with SERVERS[server](APP) as host:
        async with connect(host.ws("/identity"), subprotocols=["chat.v1"]) as ws:
            about = json.loads(await asyncio.wait_for(ws.recv(), UNIT))
            assert tuple(about["remote"]) == ws.local_address[:2]
            assert uuid.UUID(about["id"]) and about["subprotocol"] == "chat.v1"
            assert "ASGI has no ping message" in about["ping"] and about["latency"] == 0.0
            await ws.close(4000, "bye")
        _, stderr = await host.stop()
    # hypercorn's disconnect message says only 1000 (it closed) or 1006 (the client did),
    # never the client's code (hypercorn/protocol/ws_stream.py, StreamClosed).
    assert f"test app: closed {CLIENT_CLOSE[server]}" in stderr


CLIENT_CLOSE = {"uvicorn": "4000 bye", "hypercorn": "1006"}
