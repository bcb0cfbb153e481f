"""Incremental HTTP/1.1 request parsing with limits, on top of httptools.

``RequestParser.feed(data)`` returns the requests it completed. A request that
breaks a limit or the grammar ends parsing with ``error`` set to the
``Response`` to send before closing. An upgrade request ends parsing too:
``upgrade_data`` holds the bytes after its head, which belong to the new
protocol. httptools (C, llhttp) was chosen over h11 by measured handshake
rate; see bench/README.md.
"""

from __future__ import annotations

import httptools

from wirehub.config import Limits
from wirehub.http.messages import Headers, Request, Response
from wirehub.http.proxy import TrustedProxies

__all__ = ["RequestParser"]


class RequestParser:
    """Turns a byte stream into ``Request`` objects; never raises on bad input."""

    def __init__(
        self,
        limits: Limits,
        *,
        client: tuple[str, int] | None,
        scheme: str,
        trusted_proxies: TrustedProxies | None = None,
    ) -> None:
        self._limits = limits
        self._client = client
        self._scheme = scheme
        self._trusted_proxies = trusted_proxies
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._done: list[Request] = []
        self._reset()
        self.error: Response | None = None
        self.upgrade_data: bytes | None = None
        self.in_progress = False

    def _reset(self) -> None:
        self._url = b""
        self._raw_headers: list[tuple[str, str]] = []
        self._head_size = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._request: Request | None = None
        self._head_progress = False  # a head callback fired during this feed()

    def close(self) -> None:
        """The connection is gone: drop the httptools parser, which refers back to
        this object (a cycle left to the garbage collector otherwise, one per
        connection). ``feed`` returns nothing from now on."""
        self._parser = None

    def feed(self, data: bytes) -> list[Request]:
        """Parse ``data``; return the requests completed by it."""
        parser = self._parser
        if self.error is not None or self.upgrade_data is not None or parser is None:
            return []
        self._head_progress = False
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = int(exc.args[0])
            self.upgrade_data = data[offset:]
        except httptools.HttpParserError as exc:
            if self.error is None:
                self.error = Response.error(400, f"malformed request: {exc}")
        # The head is measured by the callbacks (request target, each header)
        # so that a whole oversized head in one read is caught, and so that
        # bytes of earlier pipelined requests in the same read never count.
        # httptools buffers a partial header line to itself, without limit,
        # and reports nothing until it ends: a read during which no head
        # callback fired is all head, so it is counted whole here.
        if (
            self.in_progress
            and self.error is None
            and self._request is None
            and not self._head_progress
            and self._count_head(len(data))
        ):
            self.error = Response.error(431, "request head too large")
        done, self._done = self._done, []
        return done

    # -- httptools callbacks -------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_progress = True
        self._head_progress = True

    def on_url(self, url: bytes) -> None:
        self._head_progress = True
        self._url += url
        if len(self._url) > self._limits.max_request_line:
            self._fail(414, "request line too long")
        if self._count_head(len(url)):
            self._fail(431, "request head too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_progress = True
        self._raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if len(self._raw_headers) > self._limits.max_headers:
            self._fail(431, "too many header fields")
        if self._count_head(len(name) + len(value) + 4):  # ": " and CRLF
            self._fail(431, "request head too large")

    def on_headers_complete(self) -> None:
        assert self._parser is not None  # called from feed()
        parsed = httptools.parse_url(self._url)
        headers = Headers(self._raw_headers)
        self._request = Request(
            method=self._parser.get_method().decode("ascii"),
            path=parsed.path.decode("latin-1"),
            query_string=(parsed.query or b"").decode("latin-1"),
            headers=headers,
            client=self._client,
            scheme=self._scheme,
            trusted_proxies=self._trusted_proxies,
            # Read here, per request: once a message is complete llhttp resets
            # and should_keep_alive() no longer reflects "Connection: close".
            keep_alive=bool(self._parser.should_keep_alive()),
        )
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._limits.max_body_size:
            self._fail(413, "request body too large")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._limits.max_body_size:
            self._fail(413, "request body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        assert self._request is not None
        self._request.body = b"".join(self._body)
        self._done.append(self._request)
        self.in_progress = False
        self._reset()

    def _count_head(self, size: int) -> bool:
        """Add ``size`` bytes to the current head; True once it is over the limit."""
        self._head_size += size
        return self._head_size > self._limits.max_head_size

    def _fail(self, status: int, detail: str) -> None:
        self.error = Response.error(status, detail)
        # Raising from a callback stops httptools at once; feed() turns the
        # resulting HttpParserCallbackError into nothing since error is set.
        raise ValueError(detail)
