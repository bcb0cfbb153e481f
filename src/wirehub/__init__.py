"""wirehub: a real-time WebSocket hub for Python.

This package is also the composition root: it lends the hub wirehub's own
server (``Hub.runner``, ``serve``) without loading it, so ``import wirehub``
costs no server code and the hub layer never imports the server.
"""

from __future__ import annotations

import contextlib
import socket
import ssl as _ssl
from typing import TYPE_CHECKING

from wirehub.brokers import Broker, MemoryBroker
from wirehub.brokers.emitter import AsyncEmitter, Emitter
from wirehub.client import Client, SyncClient, connect  # the client never imports the hub
from wirehub.codes import CloseCode, ErrorCode
from wirehub.config import Limits, Timeouts
from wirehub.exceptions import (
    CallError,
    CallTimeout,
    ConfigError,
    ConnectionClosed,
    EventError,
    HandshakeError,
    Reject,
    WirehubError,
)
from wirehub.http.messages import Request, Response
from wirehub.hub.hub import Hub
from wirehub.hub.peer import DisconnectReason, Peer
from wirehub.hub.websocket import WebSocket, broadcast

if TYPE_CHECKING:
    from wirehub.server.serve import Server

__all__ = [
    "AsyncEmitter",
    "Broker",
    "CallError",
    "CallTimeout",
    "Client",
    "CloseCode",
    "ConfigError",
    "ConnectionClosed",
    "DisconnectReason",
    "Emitter",
    "ErrorCode",
    "EventError",
    "HandshakeError",
    "Hub",
    "Limits",
    "MemoryBroker",
    "Peer",
    "Reject",
    "Request",
    "Response",
    "SyncClient",
    "Timeouts",
    "WebSocket",
    "WirehubError",
    "broadcast",
    "connect",
    "serve",
]

__version__ = "0.1.0"


def serve(
    hub: Hub,
    host: str | None = "127.0.0.1",
    port: int = 8000,
    *,
    ssl: _ssl.SSLContext | None = None,
    shutdown_code: int = 1001,
    sock: socket.socket | None = None,
    reuse_port: bool = False,
    handle_signals: bool = False,
) -> contextlib.AbstractAsyncContextManager[Server]:
    """Serve ``hub`` in your event loop: ``async with wirehub.serve(hub, host, port) as server:``.

    Installs no signal handler unless ``handle_signals=True``; leaving the
    block shuts down gracefully. See ``wirehub.server.serve.serve``.
    """
    from wirehub.server.serve import serve as serve_natively  # loaded on first use

    return serve_natively(
        hub,
        host,
        port,
        ssl=ssl,
        shutdown_code=shutdown_code,
        sock=sock,
        reuse_port=reuse_port,
        handle_signals=handle_signals,
    )


def _run(
    hub: Hub, host: str, port: int, *, ssl: _ssl.SSLContext | None, shutdown_code: int
) -> None:
    from wirehub.server.serve import run  # loaded on first use

    run(hub, host, port, ssl=ssl, shutdown_code=shutdown_code)


Hub.runner = _run
