"""Servers under test: name -> how to start it. Adding a peer is one line here.

Every script is started as ``python bench/servers/<script> --port N [--compression] [args]``
and must implement the endpoint contract in bench/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SERVERS_DIR = Path(__file__).resolve().parent / "servers"


@dataclass(frozen=True)
class Server:
    script: str  # file in bench/servers/
    args: tuple[str, ...] = ()
    dialect: str = "ws"  # "sio": Engine.IO v4 / Socket.IO v5; "wh": wirehub's event protocol
    deflate: bool = True  # supports permessage-deflate behind --compression
    optional: bool = False  # only when named in --servers (variants, not in the default matrix)

    @property
    def path(self) -> Path:
        return SERVERS_DIR / self.script


SERVERS: dict[str, Server] = {
    # The adapter slot: picked up (and used as the baseline) once the script exists.
    "wirehub": Server("wirehub_server.py"),
    # The event layer: JSON events, rooms with positions, acks (docs/PROTOCOL.md).
    "wirehub_events": Server("wirehub_events.py", dialect="wh"),
    # The same with Prometheus metrics on: what they cost (docs/operations.md).
    "wirehub_events_metrics": Server(
        "wirehub_events.py", args=("--metrics",), dialect="wh", optional=True
    ),
    # The same event hub as an ASGI app under uvicorn: the cost of the ASGI host (opt-in).
    "wirehub_events_uvicorn": Server("wirehub_events_uvicorn.py", dialect="wh", optional=True),
    "websockets": Server("websockets_server.py"),
    "aiohttp": Server("aiohttp_server.py"),
    "picows": Server("picows_server.py", deflate=False),
    "socketio": Server("socketio_server.py", dialect="sio"),
    "bare": Server("bare.py", deflate=False),
    "bare_coalesce": Server("bare.py", args=("--coalesce",), deflate=False),
    # The other python-socketio host, to re-check the choice of aiohttp (bench/README.md).
    "socketio_uvicorn": Server(
        "socketio_server.py",
        args=("--web", "uvicorn", "--ws", "wsproto"),
        dialect="sio",
        optional=True,
    ),
}

# The first of these present in a run is the baseline every ratio is relative to.
BASELINES = ("wirehub", "websockets")


def available() -> dict[str, Server]:
    """Servers whose script exists (wirehub_server.py arrives with the wirehub API)."""
    return {name: spec for name, spec in SERVERS.items() if spec.path.exists()}
