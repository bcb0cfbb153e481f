"""wirehub mounted at /rt in a FastAPI app (examples/frameworks/fastapi_app.py) under uvicorn."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

import wirehub
from tests.conftest import UNIT, http
from tests.frameworks.hosts import uvicorn
from wirehub import ConnectionClosed

APP = "examples.frameworks.fastapi_app:app"


async def post(port: int, path: str, data: object) -> tuple[int, bytes]:
    body = json.dumps(data).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    response = await http(port, request)
    return response.status, response.body


async def test_client_and_fastapi_route_share_the_hub() -> None:
    """A Python client at /rt/ws calls an event and gets what a FastAPI route emits."""
    async with uvicorn(APP) as host, wirehub.connect(host.ws("/rt/ws")) as client:
        assert await client.call("hello", "ada") == "hello, ada"
        news: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        client.on("news", news.put_nowait)
        status, body = await post(host.port, "/news", {"title": "mounted"})
        assert status == 200 and json.loads(body)["delivered_at"] == 1
        assert await asyncio.wait_for(news.get(), UNIT) == {"title": "mounted"}


async def test_hub_http_under_the_prefix() -> None:
    """/rt/wirehub.js, /rt/healthz and the hub's 404/426 answer under the mount prefix."""
    async with uvicorn(APP) as host:
        script = await http(host.port, b"GET /rt/wirehub.js HTTP/1.1\r\nHost: x\r\n\r\n")
        assert script.status == 200 and b"the browser client of the wirehub" in script.body
        assert script.headers["content-type"].startswith("text/javascript")
        health = await http(host.port, b"GET /rt/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert json.loads(health.body)["host"] == "asgi"
        upgrade = await http(host.port, b"GET /rt/ws HTTP/1.1\r\nHost: x\r\n\r\n")
        assert upgrade.status == 426
        missing = await http(host.port, b"GET /rt/nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert missing.status == 404
        fastapi = await http(host.port, b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert fastapi.status == 404 and fastapi.headers["content-type"] == "application/json"


async def test_sigterm_stops_the_whole_process_cleanly() -> None:
    """SIGTERM to uvicorn closes the hub's clients, runs its shutdown, and the process exits 0."""
    async with uvicorn(APP) as host:
        client = await wirehub.connect(host.ws("/rt/ws"), reconnect=False)
        closed = asyncio.get_running_loop().create_task(client.wait_closed())
        host.process.send_signal(signal.SIGTERM)
        why: ConnectionClosed = await asyncio.wait_for(closed, 5 * UNIT)
        assert why.code in (1001, 1012)
        status, stderr = await host.stop()
    # uvicorn shuts down gracefully, then re-raises the signal it caught (so the exit
    # status says SIGTERM, as for any program that does not handle it).
    assert status in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("origin", ["http://evil.example"])
async def test_origin_check_holds_under_asgi(origin: str) -> None:
    """A cross-origin browser handshake is refused with 403, as on the native server."""
    async with uvicorn(APP) as host:
        request = (
            "GET /rt/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
        ).encode()
        response = await http(host.port, request)
        assert response.status == 403
