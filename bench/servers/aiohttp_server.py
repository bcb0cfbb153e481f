"""Peer: aiohttp web server; fan-out loops over the room's WebSocketResponses."""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict

import uvloop
from _common import BACKLOG, parse_args, raise_fd_limit
from aiohttp import WSMsgType, web

rooms: defaultdict[str, set[web.WebSocketResponse]] = defaultdict(set)
COMPRESS = False


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=COMPRESS)
    await ws.prepare(request)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
    except ConnectionError:  # the client closed while we were echoing
        pass
    return ws


async def fanout(request: web.Request) -> web.WebSocketResponse:
    role = request.query.get("role", "sub")
    members = rooms[request.query.get("room", "0")]
    ws = web.WebSocketResponse(compress=COMPRESS)
    await ws.prepare(request)
    if role == "sub":
        members.add(ws)
        try:
            async for _ in ws:  # subscribers only listen; drain until close
                pass
        finally:
            members.discard(ws)
        return ws
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        for sub in list(members):  # copy: a send may yield and the room may change
            try:
                await sub.send_str(msg.data)
            except ConnectionError:
                members.discard(sub)
    return ws


async def main(args: argparse.Namespace) -> None:
    global COMPRESS
    COMPRESS = args.compression
    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/fanout", fanout)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port, backlog=BACKLOG).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    raise_fd_limit()
    uvloop.run(main(parse_args(__doc__ or "")))
