"""ASGI apps the tests serve with real servers: the hub alone, and beside Django."""

from __future__ import annotations

import asyncio
import sys

from wirehub import Hub, Limits, Peer, Reject, Request, Response, WebSocket

hub = Hub(
    cors_origins=["http://page.example"],
    api_key="secret-key",
    limits=Limits(max_message_size=1024),
)


async def tick() -> None:
    count = 0
    while True:
        count += 1
        await hub.to("ticks").emit("tick", count)
        await asyncio.sleep(0.02)


@hub.on_startup
def started() -> None:
    print("test app: startup hooks ran", file=sys.stderr, flush=True)
    hub.start_background_task(tick())


@hub.on_shutdown
def stopped() -> None:
    print("test app: shutdown hooks ran", file=sys.stderr, flush=True)


@hub.authenticate
def authenticate(request: Request) -> str:
    if request.query.get("token") == "bad":
        raise Reject(401, "bad token")
    return "anyone"


@hub.websocket("/echo")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@hub.route("/hello")
def hello(request: Request) -> Response:
    return Response.text(f"hello from {request.path}")


@hub.on("whoami")
def whoami(peer: Peer) -> str:
    return str(peer.user)
