"""wirehub, plain endpoints only, through the public API (``Hub`` + ``@hub.websocket``).

Fan-out loops over the room's WebSockets with ``await ws.send`` (a plain
endpoint has no broadcast helper; the event layer's rooms speak their own
wire protocol, so they are a different benchmark). ``hub.run`` uses uvloop.
"""

from __future__ import annotations

from collections import defaultdict

from _common import parse_args, raise_fd_limit

from wirehub import ConnectionClosed, Hub, WebSocket

rooms: defaultdict[str, set[WebSocket]] = defaultdict(set)


def build(compression: bool) -> Hub:
    hub = Hub(compression=compression)  # wirehub offers deflate by default; peers don't

    @hub.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @hub.websocket("/fanout")
    async def fanout(ws: WebSocket) -> None:
        query = ws.request.query
        members = rooms[query.get("room", "0")]
        if query.get("role", "sub") == "sub":
            members.add(ws)
            try:
                await ws.wait_closed()
            finally:
                members.discard(ws)
            return
        async for message in ws:
            for sub in list(members):  # copy: a send may wait, and the room may change
                try:
                    await sub.send(message)
                except ConnectionClosed:
                    members.discard(sub)

    return hub


if __name__ == "__main__":
    raise_fd_limit()
    args = parse_args(__doc__ or "")
    build(args.compression).run(host=args.host, port=args.port)
