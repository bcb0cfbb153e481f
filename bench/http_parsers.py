#!/usr/bin/env python3
"""Why httptools: handshake requests parsed per second by httptools and by h11.

    .venv/bin/python bench/http_parsers.py

Both parse the same WebSocket upgrade request (a browser's: 13 headers) from
bytes to method, path and headers, as the server needs them. The parser is
the only difference; the rest of a handshake (the websockets engine's checks
and response, the socket) costs the same with either.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import h11
import httptools

REQUEST = (
    b"GET /ws?room=lobby HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8000\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: http://127.0.0.1:8000\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)


class _Collect:
    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.done = True


def with_httptools() -> None:
    sink = _Collect()
    parser = httptools.HttpRequestParser(sink)
    with contextlib.suppress(httptools.HttpParserUpgrade):
        parser.feed_data(REQUEST)
    assert sink.done and len(sink.headers) == 12 and parser.get_method() == b"GET"


def with_h11() -> None:
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(REQUEST)
    event = connection.next_event()
    assert isinstance(event, h11.Request) and len(event.headers) == 12


def rate(parse: Callable[[], None], seconds: float = 1.0) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            parse()
        count += 200
    return count / elapsed


if __name__ == "__main__":
    fast, slow = rate(with_httptools), rate(with_h11)
    print(f"httptools {fast:10,.0f} handshake requests/s  ({1e6 / fast:5.1f} us each)")
    print(f"h11       {slow:10,.0f} handshake requests/s  ({1e6 / slow:5.1f} us each)")
    print(f"httptools is {fast / slow:.1f}x h11")
