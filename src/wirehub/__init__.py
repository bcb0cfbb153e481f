"""wirehub: a real-time WebSocket hub for Python.

This package is also the composition root: it lends the hub wirehub's own
server (``Hub.runner``, ``serve``) without loading it, so ``import wirehub``
costs no server code and the hub layer never imports the server.
"""

from __future__ import annotations

import ssl as _ssl
from typing import TYPE_CHECKING, Any

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
    from wirehub.server.serve import serve
else:

    def serve(*args: Any, **options: Any) -> Any:
        """``async with wirehub.serve(hub, host, port) as server:``: your loop, wirehub's server.

        ``wirehub.server.serve.serve``, loaded on the first call so that
        ``import wirehub`` loads no server code.
        """
        from wirehub.server.serve import serve as serve_natively

        return serve_natively(*args, **options)


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


def _run(
    hub: Hub, host: str, port: int, *, ssl: _ssl.SSLContext | None, shutdown_code: int
) -> None:
    from wirehub.server.serve import run  # loaded on first use

    run(hub, host, port, ssl=ssl, shutdown_code=shutdown_code)


Hub.runner = _run
