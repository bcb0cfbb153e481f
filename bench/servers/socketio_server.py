"""Peer: python-socketio AsyncServer; rooms + ``emit(to=room)``.

Socket.IO has its own transport, so the endpoint travels in the handshake query:
``/socket.io/?EIO=4&transport=websocket&ep=echo`` or ``...&ep=fanout&role=sub&room=R``.
Every message is the event ``msg`` with one string argument: on ``ep=echo`` the
server emits it back to the sender, from a publisher it emits it to the room.

Web host: aiohttp by default (the cheapest host in server CPU per message and
per delivery when measured against uvicorn with its websockets-sansio and
wsproto implementations, see bench/README.md); ``--web uvicorn`` for the other.
With aiohttp, engine.io always lets aiohttp accept permessage-deflate when a
client offers it, so ``--compression`` only matters for uvicorn. ``--redis URL``
shares rooms with other servers through ``socketio.AsyncRedisManager``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any
from urllib.parse import parse_qs

import socketio
import uvloop
from _common import BACKLOG, raise_fd_limit

# Created in __main__ once the web host (and so the async_mode) is known.
sio: socketio.AsyncServer
# sid -> ("echo", "") | ("sub", room) | ("pub", room)
roles: dict[str, tuple[str, str]] = {}


async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    ep = query.get("ep", ["echo"])[0]
    role = query.get("role", ["sub"])[0] if ep == "fanout" else "echo"
    room = query.get("room", ["0"])[0]
    roles[sid] = (role, room)
    if role == "sub":
        await sio.enter_room(sid, room)


async def disconnect(sid: str, *_reason: Any) -> None:
    roles.pop(sid, None)


async def on_msg(sid: str, data: str) -> None:
    role, room = roles.get(sid, ("", ""))
    if role == "echo":
        await sio.emit("msg", data, to=sid)
    elif role == "pub":
        await sio.emit("msg", data, to=room)


async def serve_uvicorn(args: argparse.Namespace) -> None:
    import uvicorn

    config = uvicorn.Config(
        socketio.ASGIApp(sio),
        host=args.host,
        port=args.port,
        http="httptools",
        ws=args.ws,
        ws_per_message_deflate=args.compression,
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=BACKLOG,
    )
    await uvicorn.Server(config).serve()


async def serve_aiohttp(args: argparse.Namespace) -> None:
    from aiohttp import web

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port, backlog=BACKLOG).start()
    await asyncio.Event().wait()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--compression", action="store_true")
    parser.add_argument("--web", choices=["uvicorn", "aiohttp"], default="aiohttp")
    parser.add_argument("--ws", default="websockets-sansio", help="uvicorn WebSocket impl")
    parser.add_argument(
        "--polling", action="store_true", help="allow Engine.IO's long-polling transport too"
    )
    parser.add_argument(
        "--redis", help="a Redis URL: servers on it share rooms (AsyncRedisManager)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    raise_fd_limit()
    opts = parse_args()
    sio = socketio.AsyncServer(
        async_mode="asgi" if opts.web == "uvicorn" else "aiohttp",
        transports=["polling", "websocket"] if opts.polling else ["websocket"],
        client_manager=socketio.AsyncRedisManager(opts.redis) if opts.redis else None,
    )
    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    sio.on("msg", on_msg)
    uvloop.run(serve_uvicorn(opts) if opts.web == "uvicorn" else serve_aiohttp(opts))
    sys.exit(0)
