"""The server: listening, TLS, and graceful shutdown with clients connected."""

from __future__ import annotations

import asyncio
import json
import ssl

import pytest

from tests.conftest import (
    TICK,
    UNIT,
    connect,
    dropped,
    echo_hub,
    http,
    raw_connection,
    raw_websocket,
    read_close,
    read_response,
    serve,
)
from wirehub import Hub, Limits, Request, Response, WebSocket
from wirehub.codes import retry_after, with_retry_after
from wirehub.server.serve import Server


async def test_listen_reports_the_bound_port() -> None:
    """listen() on port 0 returns the real port, and ``url`` names it."""
    server = Server(echo_hub())
    try:
        [(host, port)] = await server.listen("127.0.0.1", 0)
        assert host == "127.0.0.1"
        assert port > 0
        assert server.url == f"http://127.0.0.1:{port}"
        async with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), UNIT) == "hi"
    finally:
        await server.shutdown(timeout=UNIT)


async def test_one_server_many_listeners() -> None:
    """A server listening twice serves the same hub on both ports."""
    server = Server(echo_hub())
    try:
        [(_, port1)] = await server.listen("127.0.0.1", 0)
        [(_, port2)] = await server.listen("127.0.0.1", 0)
        for port in (port1, port2):
            async with connect(f"ws://127.0.0.1:{port}/echo") as ws:
                await ws.send(str(port))
                assert await asyncio.wait_for(ws.recv(), UNIT) == str(port)
    finally:
        await server.shutdown(timeout=UNIT)


# -- TLS -----------------------------------------------------------------------


async def test_tls_websocket_echo(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    """Over TLS, a wss:// client is served and the handshake request says https."""
    hub = echo_hub()

    @hub.websocket("/scheme")
    async def scheme(ws: WebSocket) -> None:
        await ws.send(ws.request.scheme)

    async with serve(hub, ssl=server_ssl) as s:
        assert s.url.startswith("https://")
        async with connect(s.ws("/echo"), ssl=client_ssl) as ws:
            await ws.send("secret")
            assert await asyncio.wait_for(ws.recv(), UNIT) == "secret"
        async with connect(s.ws("/scheme"), ssl=client_ssl) as ws:
            assert await asyncio.wait_for(ws.recv(), UNIT) == "https"


async def test_tls_https_healthz(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    """Over TLS, GET /healthz answers JSON like over plain HTTP."""
    async with (
        serve(echo_hub(), ssl=server_ssl) as s,
        raw_connection(s.port, ssl=client_ssl, server_hostname="127.0.0.1") as (reader, writer),
    ):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = await read_response(reader)
    assert response.status == 200
    assert json.loads(response.body)["status"] == "ok"


async def test_plain_client_on_tls_port_does_not_disturb_others(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    """A client speaking plain HTTP to the TLS port is dropped; TLS clients keep being served."""
    async with serve(echo_hub(), ssl=server_ssl) as s, connect(s.ws("/echo"), ssl=client_ssl) as ws:
        async with raw_connection(s.port) as (reader, writer):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            # Closed with at most a TLS alert (or reset), never an HTTP answer.
            try:
                data = await asyncio.wait_for(reader.read(100), UNIT)
            except ConnectionResetError:
                data = b""
            assert not data.startswith(b"HTTP")
            assert await dropped(reader)
        await ws.send("ok")
        assert await asyncio.wait_for(ws.recv(), UNIT) == "ok"


# -- graceful shutdown -----------------------------------------------------------


@pytest.mark.parametrize(
    ("default", "code", "reason"),
    [
        (1001, None, "server shutting down"),
        (1001, 1012, "server restarting"),
        (1012, None, "server restarting"),
    ],
)
async def test_shutdown_closes_websockets_with_code(
    default: int, code: int | None, reason: str
) -> None:
    """shutdown() closes every client with the given code (else the server's default)."""
    async with serve(echo_hub(), shutdown_code=default) as s:
        async with connect(s.ws("/echo")) as a, connect(s.ws("/echo")) as b:
            await asyncio.wait_for(s.server.shutdown(code=code, timeout=UNIT), 2 * UNIT)
            for ws in (a, b):
                await asyncio.wait_for(ws.wait_closed(), UNIT)
                assert (ws.close_code, ws.close_reason) == (code or default, reason)
        assert not s.server.connections


@pytest.mark.parametrize("code", [1001, 1012])
async def test_shutdown_spreads_the_clients_reconnections(code: int) -> None:
    """Each client closed by a shutdown is told a random delay below clients / reconnect_rate."""
    rate = 3 / UNIT  # three clients: delays below one UNIT
    async with serve(echo_hub(limits=Limits(reconnect_rate=rate)), shutdown_code=code) as s:
        clients = [await connect(s.ws("/echo")).__aenter__() for _ in range(3)]
        await asyncio.wait_for(s.server.shutdown(timeout=UNIT), 2 * UNIT)
        delays = []
        for ws in clients:
            await asyncio.wait_for(ws.wait_closed(), UNIT)
            assert ws.close_code == code
            assert ws.close_reason.startswith("server "), ws.close_reason
            delays.append(retry_after(ws.close_reason))
    assert all(d is not None and 0 <= d < UNIT for d in delays), delays
    assert len(set(delays)) > 1, delays  # drawn per connection


async def test_shutdown_stops_accepting() -> None:
    """After shutdown, new connections are refused."""
    async with serve(echo_hub()) as s:
        await s.server.shutdown(timeout=UNIT)
        with pytest.raises(OSError):
            async with connect(s.ws("/echo")):
                pass


async def test_shutdown_closes_idle_http_connections() -> None:
    """An idle keep-alive HTTP connection is closed at once on shutdown."""
    async with serve(echo_hub()) as s, raw_connection(s.port) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await read_response(reader)).status == 200
        await asyncio.wait_for(s.server.shutdown(timeout=UNIT), UNIT)
        assert await dropped(reader)


async def test_shutdown_lets_an_http_request_in_flight_finish() -> None:
    """A request being handled when shutdown starts gets its response, marked Connection: close."""
    hub = Hub()
    started, release = asyncio.Event(), asyncio.Event()

    @hub.route("/slow")
    async def slow(request: Request) -> Response:
        started.set()
        await release.wait()
        return Response.text("done")

    async with serve(hub) as s, raw_connection(s.port) as (reader, writer):
        writer.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.wait_for(started.wait(), UNIT)
        shutdown = asyncio.create_task(s.server.shutdown(timeout=UNIT))
        release.set()
        response = await read_response(reader)
        assert (response.status, response.body) == (200, b"done")
        assert response.headers["connection"] == "close"
        await asyncio.wait_for(shutdown, UNIT)


async def test_shutdown_cuts_clients_that_do_not_close() -> None:
    """A client that never answers the close frame is cut off after the shutdown timeout."""
    async with serve(echo_hub()) as s, raw_websocket(s.port) as (reader, _):
        shutdown = asyncio.create_task(s.server.shutdown(timeout=TICK))
        assert await read_close(reader) == (1001, "server shutting down")
        await asyncio.wait_for(shutdown, UNIT)
        assert await dropped(reader)
        assert not s.server.connections


async def test_shutdown_cancels_handlers_that_do_not_return() -> None:
    """A handler still running when shutdown ends is cancelled, and shutdown waits for it."""
    hub = Hub()
    started = asyncio.Event()
    cleaned_up = asyncio.Event()

    @hub.websocket("/stuck")
    async def stuck(ws: WebSocket) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # ignores the connection closing
        finally:
            cleaned_up.set()

    async with serve(hub) as s, connect(s.ws("/stuck")) as ws:
        await asyncio.wait_for(started.wait(), UNIT)
        await asyncio.wait_for(s.server.shutdown(timeout=UNIT), 2 * UNIT)
        assert cleaned_up.is_set()
        assert ws.close_code == 1001


async def test_shutdown_twice_is_harmless() -> None:
    """A second shutdown() returns at once."""
    async with serve(echo_hub()) as s:
        await s.server.shutdown(timeout=UNIT)
        await asyncio.wait_for(s.server.shutdown(timeout=UNIT), UNIT)


async def test_http_route_with_path_parameters() -> None:
    """``/users/{id}`` answers ``/users/42`` with ``request.path_params``; a WebSocket
    template path gets 426 over plain HTTP, a path matching nothing 404."""
    hub = Hub()

    @hub.route("/users/{id}")
    def user(request: Request) -> Response:
        return Response.json(dict(request.path_params))

    @hub.websocket("/rooms/{name}")
    async def room(ws: WebSocket) -> None:
        await ws.close()

    async with serve(hub) as s:
        response = await http(s.port, b"GET /users/42 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (response.status, json.loads(response.body)) == (200, {"id": "42"})
        response = await http(s.port, b"GET /rooms/lobby HTTP/1.1\r\nHost: t\r\n\r\n")
        assert response.status == 426
        response = await http(s.port, b"GET /users/42/more HTTP/1.1\r\nHost: t\r\n\r\n")
        assert response.status == 404


def test_a_retry_after_drawn_below_a_bound_is_written_below_it() -> None:
    """The delay in a close reason is rounded down to the millisecond: a draw of 0.9996 s
    below a 1 s bound must not read as 1.000 (the shutdown test saw exactly UNIT)."""
    assert retry_after(with_retry_after("server restarting", 0.9996)) == 0.999
    assert retry_after(with_retry_after("server restarting", 0.0004)) == 0.0
    assert retry_after(with_retry_after("server restarting", 2.5)) == 2.5
