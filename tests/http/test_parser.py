"""The incremental HTTP/1.1 request parser, fed bytes directly (also one byte at a time)."""

from __future__ import annotations

import pytest

from wirehub import Limits
from wirehub.http.messages import Request
from wirehub.http.parser import RequestParser

GET = b"GET /a/b?x=1&y=2&x=3 HTTP/1.1\r\nHost: h\r\nX-Multi: 1\r\nx-multi: 2\r\n\r\n"
POST = b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"POST /form HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
)
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def parser(**limits: int) -> RequestParser:
    return RequestParser(Limits(**limits), client=("127.0.0.1", 5555), scheme="http")


def feed_bytewise(p: RequestParser, data: bytes) -> list[Request]:
    requests: list[Request] = []
    for i in range(len(data)):
        requests += p.feed(data[i : i + 1])
    return requests


def status(p: RequestParser) -> int | None:
    return p.error.status if p.error is not None else None


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_get_request_fields(bytewise: bool) -> None:
    """Method, path, query, repeated headers, client and scheme are parsed from a GET."""
    p = parser()
    [request] = feed_bytewise(p, GET) if bytewise else p.feed(GET)
    assert (request.method, request.path, request.query_string) == ("GET", "/a/b", "x=1&y=2&x=3")
    assert request.query == {"x": "3", "y": "2"}
    assert request.headers.get_all("X-Multi") == ["1", "2"]
    assert request.client == ("127.0.0.1", 5555)
    assert request.scheme == "http"
    assert request.body == b""
    assert request.keep_alive
    assert not p.in_progress


@pytest.mark.parametrize("data", [POST, CHUNKED], ids=["content-length", "chunked"])
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_body(data: bytes, bytewise: bool) -> None:
    """A body framed by Content-Length or chunked encoding is collected whole."""
    p = parser()
    [request] = feed_bytewise(p, data) if bytewise else p.feed(data)
    assert (request.method, request.body) == ("POST", b"hello")


def test_pipelined_requests_in_order() -> None:
    """Several requests in one read come out in order."""
    p = parser()
    requests = p.feed(POST + GET + CHUNKED)
    assert [(r.method, r.path) for r in requests] == [
        ("POST", "/form"),
        ("GET", "/a/b"),
        ("POST", "/form"),
    ]


def test_in_progress_tracks_a_partial_head() -> None:
    """in_progress is set from the first byte of a request until it is complete."""
    p = parser()
    assert not p.in_progress
    assert p.feed(GET[:10]) == []
    assert p.in_progress
    assert len(p.feed(GET[10:])) == 1
    assert not p.in_progress


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
    ],
)
def test_keep_alive_is_recorded_per_request(head: bytes, keep_alive: bool) -> None:
    """Each request carries whether the client allows another request on the connection."""
    [request] = parser().feed(head)
    assert request.keep_alive is keep_alive


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_upgrade_stops_parsing_and_keeps_the_rest(bytewise: bool) -> None:
    """An upgrade request is returned and the bytes after its head are kept for the new protocol."""
    p = parser()
    data = UPGRADE + b"\x81\x80frame"
    if bytewise:
        requests = feed_bytewise(p, UPGRADE)
        assert p.upgrade_data == b""
        assert p.feed(b"more") == []
    else:
        requests = p.feed(data)
        assert p.upgrade_data == b"\x81\x80frame"
    [request] = requests
    assert request.is_websocket
    assert request.path == "/ws"


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_request_is_400(data: bytes) -> None:
    """A request that breaks the HTTP grammar sets a 400 error instead of raising."""
    p = parser()
    assert p.feed(data) == []
    assert status(p) == 400
    assert p.feed(GET) == []  # parsing stays stopped


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_request_line_too_long_is_414(bytewise: bool) -> None:
    """A request target longer than max_request_line gets 414."""
    p = parser(max_request_line=100)
    data = b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n\r\n"
    _ = feed_bytewise(p, data) if bytewise else p.feed(data)
    assert status(p) == 414


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_head_too_large_is_431(bytewise: bool) -> None:
    """A header line growing past max_head_size is refused before it ends (slowloris)."""
    p = parser(max_head_size=1000)
    p.feed(b"GET / HTTP/1.1\r\nX-Big: ")
    data = b"a" * 2000  # never finished
    _ = (
        feed_bytewise(p, data)
        if bytewise
        else [p.feed(data[i : i + 500]) for i in range(0, 2000, 500)]
    )
    assert status(p) == 431


def test_whole_oversized_head_in_one_read_is_431() -> None:
    """A complete head over max_head_size is refused even when it arrives in a single read."""
    p = parser(max_head_size=1000)
    data = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(20))
    assert p.feed(data + b"\r\n") == []
    assert status(p) == 431


@pytest.mark.parametrize("split", [10, 50, len(GET) - 1])
def test_head_size_is_per_request(split: int) -> None:
    """Pipelined requests never add up to a 431, even when a read ends mid-head."""
    p = parser(max_head_size=200)
    assert len(p.feed(GET * 20 + GET[:split])) == 20
    assert len(p.feed(GET[split:] + GET * 20)) == 21
    assert len(feed_bytewise(p, GET * 5)) == 5
    assert p.error is None


def test_too_many_headers_is_431() -> None:
    """More header fields than max_headers gets 431."""
    p = parser(max_headers=10)
    head = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(11)) + b"\r\n"
    assert p.feed(head) == []
    assert status(p) == 431


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_body_too_large_is_413(bytewise: bool) -> None:
    """A declared or chunked body over max_body_size gets 413."""
    p = parser(max_body_size=4)
    _ = feed_bytewise(p, POST) if bytewise else p.feed(POST)
    assert status(p) == 413
    p = parser(max_body_size=4)
    _ = feed_bytewise(p, CHUNKED) if bytewise else p.feed(CHUNKED)
    assert status(p) == 413
