"""What one process of a hub reports about itself: the metrics and the admin page read it.

Everything here is read at the moment of asking, from state the hub keeps
anyway (``node.stats``, the peers, the rooms, the broker's health): nothing
is counted for reporting's sake on the message path.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from wirehub.http.routing import Router
from wirehub.hub.node import Node

__all__ = ["REPORTED_STATS", "connections", "node_report"]

REPORTED_STATS = (
    "messages_in",
    "messages_out",
    "deliveries",
    "slow_consumers",
    "dropped",
    "gaps",
    "filled",
    "errors",
    "rate_limited",
    "refused_origin",
    "refused_capacity",
    "refused_rate",
    "refused_auth",
)
"""The ``node.stats`` counters a report carries (all of them monotonic)."""

TOP_ROOMS = 50  # a report lists at most this many rooms, the most populated first


def connections(node: Node, router: Router) -> dict[str, int]:
    """Open connections by transport kind: the event layer's peers and plain endpoints'."""
    counts: dict[str, int] = {"websocket": 0}
    for peer in node.peers.values():
        kind = peer.transport.kind
        counts[kind] = counts.get(kind, 0) + 1
    for endpoint in router.websocket.values():  # plain endpoints run one task per connection
        counts["websocket"] += len(getattr(endpoint, "tasks", ()))
    return counts


def node_report(node: Node, router: Router, *, name: str, started: float) -> dict[str, Any]:
    """A JSON-able picture of this process now.

    ``{"node", "host", "pid", "started", "time", "status", "broker": {...},
    "connections": {transport: n}, "peers", "rooms", "top_rooms": [[room,
    members], ...], "stats": {counter: n}}``; times are Unix seconds.
    """
    broker = node.broker.health()
    rooms = node.rooms.by_name
    top = sorted(rooms.values(), key=len, reverse=True)[:TOP_ROOMS]
    return {
        "node": name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": started,
        "time": time.time(),
        "status": "ok" if broker.get("ok", True) else "degraded",
        "broker": broker,
        "connections": connections(node, router),
        "peers": len(node.peers),
        "rooms": len(rooms),
        "top_rooms": [[room.name, len(room)] for room in top],
        "stats": {key: node.stats.get(key, 0) for key in REPORTED_STATS},
    }
