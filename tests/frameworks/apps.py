"""ASGI apps the tests serve with real servers: the hub alone, and beside Django."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from wirehub import ConfigError, Hub, Limits, Peer, Reject, Request, Response, Timeouts, WebSocket

hub = Hub(
    cors_origins=["http://page.example"],
    api_key="secret-key",
    limits=Limits(max_message_size=1024, max_buffered=512 * 1024),
    timeouts=Timeouts(
        close=1.0, shutdown=2.0, session=float(os.environ.get("WIREHUB_TEST_SESSION", 20.0))
    ),
)

if "WIREHUB_TEST_REDIS" in os.environ:  # several uvicorn workers share one hub through Redis
    from wirehub.brokers.redis import RedisBroker

    hub.broker = RedisBroker(
        os.environ["WIREHUB_TEST_REDIS"], prefix=os.environ["WIREHUB_TEST_PREFIX"]
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


@hub.route("/test/receiving")
def receiving(request: Request) -> Response:
    """Whether a fallback session has a receive request in flight here (a test's probe)."""
    sessions = hub.fallback.sessions if hub.fallback is not None else {}
    session = sessions.get(request.query.get("session", ""))
    return Response.text("yes" if session is not None and session.receiving else "no")


@hub.route("/hello")
def hello(request: Request) -> Response:
    return Response.text(f"hello from {request.path}")


@hub.route("/stream")
def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"one ", b"two ", b"three"):
            await asyncio.sleep(0)
            yield part

    return Response(stream=chunks())


@hub.route("/forever")
def forever(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            await asyncio.Event().wait()
            yield b"never"
        finally:
            print("test app: stream closed", file=sys.stderr, flush=True)

    return Response(stream=chunks())


@hub.on("flood")
async def flood(peer: Peer, count: int) -> int:
    """``count`` events of 8 KB to room ``flood``, yielding between them as a producer does."""
    for number in range(count):
        await hub.to("flood").emit("big", {"n": number, "pad": "x" * 8000})
        await asyncio.sleep(0)
    return count


LINGER = 0.5  # seconds the lingering code below takes: longer than an unwaited exit


@hub.on("disconnect")
async def disconnect(peer: Peer, reason: Any) -> None:
    if "linger" in peer.request.query:
        await asyncio.sleep(LINGER)
        print("test app: disconnect handler finished", file=sys.stderr, flush=True)


@hub.on("nap")
async def nap(peer: Peer) -> str:
    """Tell the caller it started, then take ``LINGER`` seconds (in flight at a shutdown)."""
    await peer.emit("napping")
    await asyncio.sleep(LINGER)
    print("test app: nap finished", file=sys.stderr, flush=True)
    return "rested"


@hub.on("stuck")
async def stuck(peer: Peer) -> None:
    """Never return on its own: a shutdown cancels it at its deadline."""
    await peer.emit("stuck")
    try:
        await asyncio.Event().wait()
    finally:
        print("test app: stuck handler cancelled", file=sys.stderr, flush=True)


@hub.websocket("/linger")
async def linger(ws: WebSocket) -> None:
    await ws.send("ready")
    try:
        async for _ in ws:
            pass
    finally:
        await asyncio.sleep(LINGER)
        print("test app: plain handler finished", file=sys.stderr, flush=True)


@hub.websocket("/identity", subprotocols=["chat.v1"])
async def identity(ws: WebSocket) -> None:
    """Say what the connection knows of itself, then report how it closed."""
    try:
        ping = f"round trip {await ws.ping()}"
    except ConfigError as exc:
        ping = str(exc)
    about = {"ping": ping, "latency": ws.latency, "remote": ws.remote_address, "id": str(ws.id)}
    await ws.send(json.dumps({**about, "subprotocol": ws.subprotocol}))
    async for _ in ws:
        pass
    print(f"test app: closed {ws.close_code} {ws.close_reason}", file=sys.stderr, flush=True)


@hub.on("whoami")
def whoami(peer: Peer) -> str:
    return str(peer.user)


@hub.on("pid")
def pid(peer: Peer) -> int:
    return os.getpid()


def starlette_without_lifespan() -> Any:
    """The hub mounted in Starlette with no lifespan handed over (the mistake docs warn of)."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    return Starlette(routes=[Mount("/rt", app=hub)])
