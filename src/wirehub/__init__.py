"""wirehub: a real-time WebSocket hub for Python."""

from wirehub.codes import CloseCode
from wirehub.config import Limits, Timeouts
from wirehub.exceptions import (
    ConfigError,
    ConnectionClosed,
    HandshakeError,
    Reject,
    WirehubError,
)
from wirehub.http.messages import Request, Response
from wirehub.hub.hub import Hub
from wirehub.hub.websocket import WebSocket

__all__ = [
    "CloseCode",
    "ConfigError",
    "ConnectionClosed",
    "HandshakeError",
    "Hub",
    "Limits",
    "Reject",
    "Request",
    "Response",
    "Timeouts",
    "WebSocket",
    "WirehubError",
]

__version__ = "0.1.0"
