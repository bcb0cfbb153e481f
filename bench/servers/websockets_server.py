"""Peer: websockets (new asyncio implementation), fan-out with ``websockets.broadcast``."""

from __future__ import annotations

import argparse
from collections import defaultdict

import uvloop
from _common import BACKLOG, parse_args, raise_fd_limit, route
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

rooms: defaultdict[str, set[ServerConnection]] = defaultdict(set)


async def handler(ws: ServerConnection) -> None:
    path, role, room = route(ws.request.path if ws.request else "/")
    try:
        if path == "/echo":
            while True:
                # decode=False + text=True: the documented fast path, no UTF-8 round trip.
                msg = await ws.recv(decode=False)
                await ws.send(msg, text=True)
        elif path == "/fanout" and role == "sub":
            members = rooms[room]
            members.add(ws)
            try:
                await ws.wait_closed()
            finally:
                members.discard(ws)
        elif path == "/fanout":
            while True:
                msg = await ws.recv(decode=False)
                broadcast(rooms[room], msg, text=True)
    except ConnectionClosed:
        pass


async def main(args: argparse.Namespace) -> None:
    async with serve(
        handler,
        args.host,
        args.port,
        compression="deflate" if args.compression else None,
        backlog=BACKLOG,
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    raise_fd_limit()
    uvloop.run(main(parse_args(__doc__ or "")))
