"""HTTP request and response objects."""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import http
import json
import re
import types
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from websockets.datastructures import Headers

from wirehub.http.proxy import TrustedProxies, parse_ip

__all__ = ["Headers", "Request", "Response"]

NO_PARAMS: Mapping[str, str] = types.MappingProxyType({})  # shared: most routes have none
_UNSAFE = re.compile(r"[\r\n\x00]")


@dataclasses.dataclass(eq=False)
class Request:
    """One HTTP request, or the handshake request of a WebSocket.

    ``headers`` is case-insensitive and keeps repeated fields
    (``headers.get_all("cookie")``). ``client`` is the peer's ``(host, port)``
    as the socket sees it. ``keep_alive`` says whether the client lets the
    connection carry another request after this one (HTTP/1.1 without
    ``Connection: close``, or HTTP/1.0 with ``keep-alive``).
    ``client_ip`` is the client's address, read from ``X-Forwarded-For``
    when the socket peer is one of ``trusted_proxies`` (``Hub(trusted_proxies=...)``).
    ``path_params`` holds the values of the route's ``{name}`` parameters
    (``/room/{name}`` and ``/room/lobby``: ``{"name": "lobby"}``), percent-decoded.
    """

    method: str
    path: str
    query_string: str
    headers: Headers
    client: tuple[str, int] | None = None
    scheme: str = "http"
    body: bytes = b""
    keep_alive: bool = True
    user: Any = None
    """The identity the hub's authentication hook gave this handshake (``hub.authenticate``)."""
    trusted_proxies: TrustedProxies | None = dataclasses.field(default=None, repr=False)
    path_params: Mapping[str, str] = dataclasses.field(default_factory=lambda: NO_PARAMS)
    _on_gone: list[Callable[[], None]] | None = dataclasses.field(
        default=None, init=False, repr=False
    )

    @functools.cached_property
    def query(self) -> dict[str, str]:
        """Query parameters; for a repeated name, the last value wins."""
        return {k: v[-1] for k, v in parse_qs(self.query_string, keep_blank_values=True).items()}

    @functools.cached_property
    def client_ip(self) -> str | None:
        """The client's IP address (None when unknown, e.g. over a Unix socket).

        The socket peer's, unless that peer is a trusted proxy: then the
        nearest untrusted address in ``X-Forwarded-For`` (see ``http/proxy.py``).
        """
        peer = self.client[0] if self.client is not None else None
        if self.trusted_proxies is None:
            address = parse_ip(peer) if peer is not None else None
            return str(address) if address is not None else peer
        return self.trusted_proxies.client_ip(peer, self.headers.get_all("X-Forwarded-For"))

    @property
    def is_websocket(self) -> bool:
        return "websocket" in self.headers.get("upgrade", "").lower()

    def json(self) -> Any:
        return json.loads(self.body)

    def on_client_gone(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` if the client goes away before this request is answered
        (wirehub's server and its ASGI adapter tell; a long-poll ends then)."""
        self._on_gone = [*(self._on_gone or ()), callback]

    def client_gone(self) -> None:
        """The host saw the client go away: run the ``on_client_gone`` callbacks, once."""
        callbacks, self._on_gone = self._on_gone or [], None
        for callback in callbacks:
            callback()


@dataclasses.dataclass(eq=False)
class Response:
    """An HTTP response. ``headers`` are extra fields; framing ones are added on write.

    With ``stream`` (an async iterator of bytes) the body is that iterator's
    chunks, written as they come with chunked transfer coding (RFC 9112
    §7.1), and ``body`` is ignored: server-sent streams such as the HTTP
    fallback's.
    """

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    stream: AsyncIterator[bytes] | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def text(cls, text: str, status: int = 200, **kwargs: Any) -> Response:
        return cls(status, text.encode(), **kwargs)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        body = json.dumps(data, separators=(",", ":")).encode()
        return cls(status, body, "application/json")

    @classmethod
    def error(cls, status: int, detail: str = "") -> Response:
        """A plain-text error page: the status phrase, then ``detail``."""
        phrase = http.HTTPStatus(status).phrase
        return cls(status, f"{status} {phrase}\n{detail}".rstrip().encode() + b"\n")

    def serialize(self, *, keep_alive: bool, head_only: bool = False) -> bytes:
        """The response's bytes; raises ``ValueError`` for a status that is not an HTTP
        status, or a header that is not Latin-1 or holds CR, LF or NUL."""
        status = http.HTTPStatus(self.status)
        lines = [
            f"HTTP/1.1 {status.value} {status.phrase}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            "Server: wirehub",
        ]
        # 204 and 304 carry no body, and no framing or type for one (RFC 9110 §8.6, §15.4.5).
        if self.stream is not None:
            lines.append("Transfer-Encoding: chunked")
            lines.append(f"Content-Type: {self.content_type}")
        elif self.status not in (204, 304):
            lines.append(f"Content-Length: {len(self.body)}")
            lines.append(f"Content-Type: {self.content_type}")
        for name, value in self.headers:
            if _UNSAFE.search(name) or _UNSAFE.search(value):  # response splitting
                raise ValueError(f"header {name!r}: CR, LF and NUL are not allowed in headers")
            lines.append(f"{name}: {value}")
        if not keep_alive:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if head_only or self.status in (204, 304) or self.stream is not None:
            return head
        return head + self.body
