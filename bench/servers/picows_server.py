"""Peer: picows (Cython WebSocket protocol); fan-out loops over the room's transports.

picows has no permessage-deflate, so ``--compression`` is accepted and ignored.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict

import uvloop
from _common import BACKLOG, parse_args, raise_fd_limit, route
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

rooms: defaultdict[str, set[WSTransport]] = defaultdict(set)


class Listener(WSListener):
    """Base: answer a client close frame (picows leaves that to the application)."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


class Echo(Listener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT or kind == WSMsgType.BINARY:
            transport.send(kind, frame.get_payload_as_memoryview())
        else:
            super().on_ws_frame(transport, frame)


class Subscriber(Listener):
    def __init__(self, room: str) -> None:
        self.members = rooms[room]

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.members.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.members.discard(transport)


class Publisher(Listener):
    def __init__(self, room: str) -> None:
        self.members = rooms[room]

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            payload = frame.get_payload_as_bytes()  # one copy, shared by every send
            for sub in self.members:
                sub.send(WSMsgType.TEXT, payload)
        else:
            super().on_ws_frame(transport, frame)


def listener_factory(request: WSUpgradeRequest) -> WSListener | None:
    path, role, room = route(request.path.decode())
    if path == "/echo":
        return Echo()
    if path == "/fanout":
        return Subscriber(room) if role == "sub" else Publisher(room)
    return None  # picows answers 404


async def main(args: argparse.Namespace) -> None:
    server = await ws_create_server(listener_factory, args.host, args.port, backlog=BACKLOG)
    async with server:
        await asyncio.Event().wait()


if __name__ == "__main__":
    raise_fd_limit()
    uvloop.run(main(parse_args(__doc__ or "")))
