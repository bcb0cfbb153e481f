"""wirehub: a real-time WebSocket hub for Python."""

from wirehub.brokers import Broker, MemoryBroker
from wirehub.brokers.emitter import AsyncEmitter, Emitter
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

__all__ = [
    "AsyncEmitter",
    "Broker",
    "CallError",
    "CallTimeout",
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
    "Timeouts",
    "WebSocket",
    "WirehubError",
    "broadcast",
]

__version__ = "0.1.0"

# The Python client (it never imports the hub or the server).
from wirehub.client import Client, SyncClient, connect

__all__ += ["Client", "SyncClient", "connect"]
