"""wirehub's event layer: the same workloads as JSON events, rooms and acks.

The load generator speaks docs/PROTOCOL.md ("wh" dialect) on ``/ws``:
``?ep=echo`` peers get each ``m`` event back as its ack; ``?ep=fanout&role=sub``
peers are joined to the room by the connect handler; a publisher's ``m``
events are emitted to the room (``hub.to(room).emit``), every delivery an
``event`` message with the room's position. ``--redis URL`` makes it one
node of a hub spread over processes (bench/cross_node.py). ``--metrics`` turns on the
Prometheus metrics (``Hub(metrics=True)``) to measure what they cost.
SIGTERM closes every client with 1012, as a restart does (reconnect_storm_restart).
"""

from __future__ import annotations

from typing import Any

from _common import make_parser, raise_fd_limit

from wirehub import Hub, Peer, Request


def build(compression: bool = False, metrics: bool = False, redis: str | None = None) -> Hub:
    broker = None
    if redis:
        from wirehub.brokers.redis import RedisBroker

        broker = RedisBroker(redis, prefix="bench")
    hub = Hub(compression=compression, metrics=metrics, broker=broker)

    @hub.on("connect")
    async def connect(peer: Peer, request: Request) -> None:
        query = request.query
        if query.get("ep") == "fanout":
            room = query.get("room", "0")
            if query.get("role", "sub") == "sub":
                await peer.join(room)
            else:
                peer.state["publishes_to"] = room

    @hub.on("m")
    async def message(peer: Peer, data: Any) -> Any:
        room = peer.state.get("publishes_to")
        if room is None:
            return data  # echo: the ack carries it back
        await hub.to(room).emit("m", data)
        return None

    return hub


if __name__ == "__main__":
    raise_fd_limit()
    parser = make_parser(__doc__ or "")
    parser.add_argument("--metrics", action="store_true", help="serve /metrics (Hub(metrics=True))")
    parser.add_argument("--redis", help="a Redis URL: nodes on it serve one hub (RedisBroker)")
    args = parser.parse_args()
    build(args.compression, args.metrics, args.redis).run(
        host=args.host, port=args.port, shutdown_code=1012
    )
