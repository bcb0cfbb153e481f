"""wirehub, plain endpoints, through the public API (``Hub``, ``@hub.websocket``, ``broadcast``).

Fan-out uses ``wirehub.broadcast``: the frame is built once per message and
queued to every subscriber, written once per subscriber per loop tick.
``hub.run`` uses uvloop. The event layer is benchmarked by wirehub_events.py.
"""

from __future__ import annotations

from collections import defaultdict

from _common import parse_args, raise_fd_limit

from wirehub import Hub, WebSocket, broadcast

rooms: defaultdict[str, set[WebSocket]] = defaultdict(set)


def build(compression: bool) -> Hub:
    hub = Hub(compression=compression, events_path=None)  # peers don't offer deflate by default

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
            broadcast(members, message)

    return hub


if __name__ == "__main__":
    raise_fd_limit()
    args = parse_args(__doc__ or "")
    build(args.compression).run(host=args.host, port=args.port)
