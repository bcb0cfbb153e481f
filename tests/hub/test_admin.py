"""The admin endpoint at the wire level: its credential, its origin rule, the cluster view."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.apps.ops import make_hub
from tests.conftest import UNIT, Served, connect, http, serve
from tests.hub.wire import WireClient
from tests.security.conftest import closed_with, handshake_status
from wirehub import ConfigError, Hub
from wirehub.brokers.redis import RedisBroker

KEY = "correct horse battery staple"
INTERVAL = UNIT / 5


def admin_hub(**kwargs: Any) -> Hub:
    hub = make_hub(admin_key=KEY, **kwargs)
    assert hub.admin is not None
    hub.admin.interval = INTERVAL
    hub.admin.timeout = UNIT / 2
    return hub


async def open_admin(served: Served, key: str = KEY) -> WireClient:
    ws = await connect(served.ws("/admin/ws"))
    await ws.send(json.dumps({"type": "auth", "token": key}))
    client = WireClient(ws)
    client.welcome = await client.recv()
    assert client.welcome["type"] == "welcome", client.welcome
    return client


async def nodes_seen(
    admin: WireClient, count: int, connections: list[int] | None = None
) -> list[dict[str, Any]]:
    """Ask for snapshots until the page's node knows ``count`` processes (with these
    numbers of connections, in some order)."""
    async with asyncio.timeout(5 * UNIT):
        while True:
            reports = (await admin.call("snapshot"))["data"]["nodes"]
            seen = sorted(r["connections"]["websocket"] for r in reports)
            if len(reports) == count and connections in (None, seen):
                return list(reports)
            await asyncio.sleep(INTERVAL)


@contextlib.asynccontextmanager
async def two_nodes(redis_url: str, prefix: str) -> AsyncIterator[tuple[Served, Served]]:
    async with (
        serve(admin_hub(broker=RedisBroker(redis_url, prefix=prefix))) as a,
        serve(admin_hub(broker=RedisBroker(redis_url, prefix=prefix))) as b,
    ):
        yield a, b


def test_a_short_key_is_refused() -> None:
    """An admin key shorter than 16 characters is a configuration error."""
    with pytest.raises(ConfigError):
        Hub(admin_key="short")


async def test_the_admin_page_is_off_by_default() -> None:
    """Without admin_key there is no /admin page and no /admin/ws endpoint."""
    async with serve(make_hub()) as s:
        page = await http(s.port, b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert page.status == 404
        status, _ = await handshake_status(s.port, "/admin/ws")
        assert status == 404


async def test_page_headers_forbid_framing_and_other_origins() -> None:
    """The page is served with a CSP that forbids framing and loading from elsewhere."""
    async with serve(admin_hub()) as s:
        page = await http(s.port, b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (
            page.status == 200
            and b"/wirehub.js"
            in (await http(s.port, b"GET /admin/admin.js HTTP/1.1\r\nHost: x\r\n\r\n")).body
        )
        assert page.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"


async def test_a_wrong_key_is_closed_4001_and_nothing_is_sent() -> None:
    """A wrong key in the first message closes the connection with 4001 before any welcome."""
    async with serve(admin_hub()) as s:
        ws = await connect(s.ws("/admin/ws"))
        await ws.send(json.dumps({"type": "auth", "token": "x" * 30}))
        assert (await closed_with(ws))[0] == 4001


async def test_other_origins_are_refused_even_when_the_app_allows_any() -> None:
    """A cross-origin handshake to /admin/ws gets 403 although allowed_origins=["*"]."""
    async with serve(admin_hub(allowed_origins=["*"])) as s:
        evil = "Origin: https://evil.example\r\n"
        assert (await handshake_status(s.port, "/admin/ws", evil))[0] == 403
        assert (await handshake_status(s.port, "/ws", evil))[0] == 101  # the app's own rule
        own = "Origin: http://127.0.0.1\r\n"  # the Host the handshake names
        assert (await handshake_status(s.port, "/admin/ws", own))[0] == 101


async def test_app_clients_cannot_call_admin_handlers() -> None:
    """The admin's handlers live on its own endpoint: on /ws they are unknown events."""
    async with serve(admin_hub()) as s, await WireClient.open(s.ws("/ws")) as client:
        reply = await client.call("disconnect_peer", {"id": client.id})
        assert reply["code"] == "unknown_event"


async def test_the_emit_form_refuses_a_name_the_clients_keep() -> None:
    """Emitting "error" from the page is invalid_data naming the event, not internal_error."""
    async with serve(admin_hub()) as s:
        admin = await open_admin(s)
        reply = await admin.call("emit", {"room": "lobby", "event": "error", "data": 1})
        assert (reply["code"], reply["details"]["path"]) == ("invalid_data", "$.event")
        await admin.close()


async def test_two_nodes_look_up_disconnect_and_emit_across_redis(
    redis_url: str, prefix: str
) -> None:
    """A page on node A sees both nodes, finds a peer on B, emits to its room, disconnects it."""
    async with two_nodes(redis_url, prefix) as (a, b):
        admin = await open_admin(a)
        async with await WireClient.open(b.ws("/ws")) as peer:
            await peer.join("lobby")
            reports = await nodes_seen(admin, 2, connections=[0, 1])
            assert len({r["node"] for r in reports}) == 2
            found = (await admin.call("lookup", {"id": peer.id}))["data"]
            assert found["found"] and found["peer"]["rooms"] == ["lobby"]
            assert found["peer"]["node"] != (await admin.call("snapshot"))["data"]["node"]
            missing = (await admin.call("lookup", {"id": "nobody"}))["data"]
            assert missing == {"found": False, "peer": None}
            emitted = await admin.call(
                "emit", {"room": "lobby", "event": "notice", "data": {"text": "maintenance"}}
            )
            assert emitted["data"]["offset"] == 1
            event = await peer.recv()
            assert (event["event"], event["data"], event["room"]) == (
                "notice",
                {"text": "maintenance"},
                "lobby",
            )
            closed = (await admin.call("disconnect_peer", {"id": peer.id}))["data"]
            assert closed["closed"] is True
            with pytest.raises(ConnectionClosed):
                while True:
                    await peer.recv()
            assert peer.ws.close_code == 4003
        await admin.close()


async def test_a_node_that_stops_is_forgotten_and_reports_flow(redis_url: str, prefix: str) -> None:
    """Reports keep arriving as events; a node that shuts down is announced gone at once."""
    async with serve(admin_hub(broker=RedisBroker(redis_url, prefix=prefix))) as a:
        admin = await open_admin(a)
        async with serve(admin_hub(broker=RedisBroker(redis_url, prefix=prefix))):
            await nodes_seen(admin, 2)
            report = await admin.recv()
            assert report["event"] == "report" and "stats" in report["data"]
        async with asyncio.timeout(2 * UNIT):
            while (await admin.recv())["event"] != "gone":
                pass
        assert len((await admin.call("snapshot"))["data"]["nodes"]) == 1
        await admin.close()
