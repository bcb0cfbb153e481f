"""``Hub`` configuration seen from a client: compression, routes, health."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import UNIT, connect, echo_hub, http, serve
from wirehub import ConfigError, Hub, Request, Response, WebSocket


async def test_compression_negotiated_by_default() -> None:
    """A client offering permessage-deflate gets it, and compressed messages round-trip."""
    async with serve(echo_hub()) as s, connect(s.ws("/echo"), compression="deflate") as ws:
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        assert [type(e).__name__ for e in ws.protocol.extensions] == ["PerMessageDeflate"]
        await ws.send("z" * 10000)
        assert await asyncio.wait_for(ws.recv(), UNIT) == "z" * 10000


async def test_compression_refused_when_disabled() -> None:
    """Hub(compression=False) answers without the extension even when the client offers it."""
    async with (
        serve(echo_hub(compression=False)) as s,
        connect(s.ws("/echo"), compression="deflate") as ws,
    ):
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert ws.protocol.extensions == []
        await ws.send("z" * 10000)
        assert await asyncio.wait_for(ws.recv(), UNIT) == "z" * 10000


async def test_client_without_compression_is_served_plain() -> None:
    """A client that does not offer compression is served without it."""
    async with serve(echo_hub()) as s, connect(s.ws("/echo"), compression=None) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


def test_duplicate_websocket_path_is_refused() -> None:
    """Registering two endpoints on one path raises ConfigError."""
    hub = echo_hub()
    with pytest.raises(ConfigError):

        @hub.websocket("/echo")
        async def again(ws: WebSocket) -> None: ...


async def test_route_decorator_and_add_route() -> None:
    """``@hub.route`` and ``hub.add_route`` both register HTTP handlers with their methods."""
    hub = Hub()

    @hub.route("/a", methods=("GET", "POST"))
    def a(request: Request) -> Response:
        return Response.text(f"a {request.method}")

    async def b(request: Request) -> Response:
        return Response.text("b")

    hub.add_route("/b", b)
    async with serve(hub) as s:
        assert (await http(s.port, b"GET /a HTTP/1.1\r\n\r\n")).body == b"a GET"
        post = b"POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        assert (await http(s.port, post)).body == b"a POST"
        assert (await http(s.port, b"GET /b HTTP/1.1\r\n\r\n")).body == b"b"
