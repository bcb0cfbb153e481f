"""One socket end to end: HTTP/1.1 framing, limits and timeouts, then WebSocket faults."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from tests.conftest import (
    GRACE,
    PING,
    PONG,
    TEXT,
    TICK,
    UNIT,
    close_frame,
    connect,
    dropped,
    echo_hub,
    fast_hub,
    frame,
    http,
    raw_connection,
    raw_websocket,
    read_close,
    read_eof,
    read_frame,
    read_response,
    serve,
    upgrade_request,
)
from tests.server.test_bounds import until
from wirehub import Hub, Limits, Request, Response, Timeouts, WebSocket

GET = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"


def routes_hub(**kwargs: object) -> Hub:
    """A hub with a sync GET route, an async POST echo route and a slow route."""
    hub = echo_hub(**kwargs)
    started, release = asyncio.Event(), asyncio.Event()
    hub.slow = (started, release)  # type: ignore[attr-defined]

    @hub.route("/hello")
    def hello(request: Request) -> Response:
        return Response.text(f"hello {request.query.get('name', 'world')}")

    @hub.route("/echo-body", methods=("POST", "PUT"))
    async def echo_body(request: Request) -> Response:
        return Response(200, request.body, "application/octet-stream")

    @hub.route("/slow")
    async def slow(request: Request) -> Response:
        started.set()
        await release.wait()
        return Response.text("slow")

    @hub.route("/sync-error")
    def sync_error(request: Request) -> Response:
        raise RuntimeError("sync boom")

    @hub.route("/async-error")
    async def async_error(request: Request) -> Response:
        raise RuntimeError("async boom")

    @hub.route("/not-a-response")
    async def not_a_response(request: Request) -> Response:
        return "oops"  # type: ignore[return-value]

    return hub


# -- HTTP routes and answers -------------------------------------------------------


async def test_get_route() -> None:
    """A sync GET route answers 200 with its body, and sees the query string."""
    async with serve(routes_hub()) as s:
        response = await http(s.port, GET % b"/hello?name=ada")
    assert response.status == 200
    assert response.body == b"hello ada"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == "9"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world",
        b"PUT /echo-body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_post_route_receives_the_body(request_bytes: bytes) -> None:
    """An async route gets the request body whether sized or chunked."""
    async with serve(routes_hub()) as s:
        response = await http(s.port, request_bytes)
    assert (response.status, response.body) == (200, b"hello world")


async def test_unknown_path_is_404() -> None:
    """A path with no route, mount or endpoint gets 404."""
    async with serve(routes_hub()) as s:
        response = await http(s.port, GET % b"/nowhere")
    assert response.status == 404
    assert response.body.startswith(b"404 Not Found")


async def test_wrong_method_is_405_with_allow() -> None:
    """A method the route does not take gets 405 with an Allow header listing those it does."""
    async with serve(routes_hub()) as s:
        response = await http(s.port, b"DELETE /echo-body HTTP/1.1\r\nHost: t\r\n\r\n")
    assert response.status == 405
    assert response.headers["allow"] == "POST, PUT"


async def test_head_sends_headers_without_body() -> None:
    """HEAD (implied by GET) gets the headers but no body, and the connection stays usable."""
    async with serve(routes_hub()) as s, raw_connection(s.port) as (reader, writer):
        writer.write(b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n" + GET % b"/hello")
        head = await read_response(reader, head_only=True)
        get = await read_response(reader)
    assert head.headers["content-length"] == "11"
    assert (get.status, get.body) == (200, b"hello world")


async def test_body_too_large_is_413_and_closes() -> None:
    """A body over Limits.max_body_size gets 413 and the connection is closed."""
    hub = routes_hub(limits=Limits(max_body_size=10))
    async with serve(hub) as s, raw_connection(s.port) as (reader, writer):
        writer.write(b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n")
        response = await read_response(reader)
        assert response.status == 413
        assert response.headers["connection"] == "close"
        assert await read_eof(reader) == b""


async def test_plain_get_on_websocket_route_is_426() -> None:
    """A plain GET on a WebSocket endpoint gets 426 Upgrade Required."""
    async with serve(routes_hub()) as s:
        response = await http(s.port, GET % b"/echo")
    assert response.status == 426
    assert response.headers["upgrade"] == "websocket"


@pytest.mark.parametrize("path", ["/sync-error", "/async-error", "/not-a-response"])
async def test_failing_handler_is_500_and_connection_survives(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A route that raises (or returns a non-Response) gets 500; the connection keeps serving."""
    async with serve(routes_hub()) as s, raw_connection(s.port) as (reader, writer):
        writer.write(GET % path.encode())
        assert (await read_response(reader)).status == 500
        writer.write(GET % b"/hello")
        assert (await read_response(reader)).body == b"hello world"
    assert any(r.exc_info for r in caplog.records)


# -- keep-alive and pipelining ---------------------------------------------------


async def test_keep_alive_two_requests_on_one_connection() -> None:
    """A keep-alive connection answers one request after another."""
    async with serve(routes_hub()) as s, raw_connection(s.port) as (reader, writer):
        for name in (b"a", b"b"):
            writer.write(GET % (b"/hello?name=" + name))
            response = await read_response(reader)
            assert response.body == b"hello " + name
            assert "connection" not in response.headers


async def test_pipelined_requests_answered_in_order() -> None:
    """Pipelined requests are answered in order, even when an earlier one is slow."""
    hub = routes_hub()
    async with serve(hub) as s, raw_connection(s.port) as (reader, writer):
        writer.write(
            GET % b"/slow"
            + GET % b"/hello?name=1"
            + b"POST /echo-body HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n2"
            + GET % b"/hello?name=3"
        )
        started, release = hub.slow  # type: ignore[attr-defined]
        await asyncio.wait_for(started.wait(), UNIT)
        release.set()
        bodies = [(await read_response(reader)).body for _ in range(4)]
    assert bodies == [b"slow", b"hello 1", b"2", b"hello 3"]


async def test_connection_close_request_closes_after_response() -> None:
    """A request with 'Connection: close' is answered, then the server closes."""
    async with serve(routes_hub()) as s, raw_connection(s.port) as (reader, writer):
        writer.write(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        response = await read_response(reader)
        assert response.status == 200
        assert response.headers["connection"] == "close"
        assert await read_eof(reader) == b""


async def test_http10_closes_after_response() -> None:
    """An HTTP/1.0 request without keep-alive is answered, then the server closes."""
    async with serve(routes_hub()) as s, raw_connection(s.port) as (reader, writer):
        writer.write(b"GET /hello HTTP/1.0\r\n\r\n")
        assert (await read_response(reader)).status == 200
        assert await read_eof(reader) == b""


async def test_requests_after_connection_close_are_ignored() -> None:
    """Requests pipelined after a 'Connection: close' one get no answer, not even a 400."""
    async with serve(routes_hub()) as s, raw_connection(s.port) as (reader, writer):
        writer.write(
            b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" + GET % b"/hello"
        )
        assert (await read_response(reader)).status == 200
        assert await read_eof(reader) == b""


async def test_error_for_a_pipelined_request_waits_its_turn() -> None:
    """A malformed request behind a slow one is answered after it, so responses stay in order."""
    hub = routes_hub()
    async with serve(hub) as s, raw_connection(s.port) as (reader, writer):
        writer.write(GET % b"/slow" + b"\x00garbage\r\n\r\n")
        started, release = hub.slow  # type: ignore[attr-defined]
        await asyncio.wait_for(started.wait(), UNIT)
        release.set()
        first = await read_response(reader)
        assert (first.status, first.body) == (200, b"slow")
        assert (await read_response(reader)).status == 400
        assert await read_eof(reader) == b""


# -- malformed and oversized requests ----------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X-H: v\r\n" * 101 + b"\r\n", 431),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"BLAH\x00 / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS hello on plain HTTP
    ],
    ids=[
        "head-too-large",
        "too-many-headers",
        "request-line-too-long",
        "bad-method",
        "bad-header",
        "tls-hello",
    ],
)
async def test_bad_request_gets_error_and_close(request_bytes: bytes, status: int) -> None:
    """A request breaking a limit or the grammar gets its 4xx answer, then the connection closes."""
    async with serve(routes_hub()) as s, raw_connection(s.port) as (reader, writer):
        writer.write(request_bytes)
        response = await read_response(reader)
        assert response.status == status
        assert response.headers["connection"] == "close"
        assert await read_eof(reader) == b""


async def test_bad_request_does_not_disturb_others() -> None:
    """While one client sends garbage, another keeps being served."""
    async with serve(routes_hub()) as s, raw_connection(s.port) as (reader, writer):
        writer.write(GET % b"/hello")
        assert (await read_response(reader)).status == 200
        assert (await http(s.port, b"\x00\x01garbage\r\n\r\n")).status == 400
        writer.write(GET % b"/hello")
        assert (await read_response(reader)).status == 200


# -- timeouts --------------------------------------------------------------------


async def test_slow_request_head_gets_408() -> None:
    """Half a request head not finished within Timeouts.handshake gets 408, then close."""
    async with serve(fast_hub(handshake=GRACE)) as s, raw_connection(s.port) as (reader, writer):
        writer.write(b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        response = await read_response(reader)
        assert response.status == 408
        assert await read_eof(reader) == b""


async def test_slow_head_behind_a_slow_request_gets_408() -> None:
    """A partial head pipelined behind a request still being handled is also timed out."""
    hub = routes_hub(timeouts=Timeouts(handshake=GRACE))
    async with serve(hub) as s, raw_connection(s.port) as (reader, writer):
        writer.write(GET % b"/slow" + b"GET /hello HTTP/1.1\r\nX-Slow: ")
        started, release = hub.slow  # type: ignore[attr-defined]
        await asyncio.wait_for(started.wait(), UNIT)
        release.set()
        assert (await read_response(reader)).body == b"slow"
        assert (await read_response(reader)).status == 408
        assert await read_eof(reader) == b""


async def test_slow_websocket_handshake_gets_408() -> None:
    """An upgrade request head trickling in past Timeouts.handshake gets 408."""
    async with serve(fast_hub(handshake=GRACE)) as s, raw_connection(s.port) as (reader, writer):
        writer.write(upgrade_request()[:40])
        assert (await read_response(reader)).status == 408


async def test_silent_connection_is_dropped() -> None:
    """A connection that sends nothing within Timeouts.handshake is closed without an answer."""
    async with serve(fast_hub(handshake=TICK)) as s, raw_connection(s.port) as (reader, _):
        assert await dropped(reader)


async def test_idle_keep_alive_connection_is_closed() -> None:
    """A keep-alive connection idle for Timeouts.idle_http after a response is closed."""
    async with serve(fast_hub(idle_http=TICK)) as s, raw_connection(s.port) as (reader, writer):
        writer.write(GET % b"/healthz")
        assert (await read_response(reader)).status == 200
        assert await dropped(reader)


async def test_handshake_timer_does_not_cut_a_websocket() -> None:
    """Once upgraded, a connection outlives Timeouts.handshake and idle_http."""
    hub = fast_hub(handshake=GRACE, idle_http=TICK, ping_interval=2 * GRACE, ping_timeout=UNIT)
    async with serve(hub) as s, raw_websocket(s.port) as (reader, writer):
        # The first keepalive ping is the clock: it comes two handshake timeouts later.
        assert (await read_frame(reader))[0] == PING
        writer.write(frame(TEXT, b"alive"))
        assert await read_frame(reader) == (TEXT, b"alive")


# -- the WebSocket handshake ------------------------------------------------------


async def test_upgrade_to_unknown_path_is_404() -> None:
    """An upgrade request for a path with no WebSocket endpoint gets 404."""
    async with serve(echo_hub()) as s, raw_connection(s.port) as (reader, writer):
        writer.write(upgrade_request("/nope"))
        assert (await read_response(reader)).status == 404
        assert await read_eof(reader) == b""


async def test_upgrade_with_post_is_405() -> None:
    """An upgrade request that is not a GET gets 405 with Allow: GET."""
    async with serve(echo_hub()) as s, raw_connection(s.port) as (reader, writer):
        writer.write(upgrade_request().replace(b"GET", b"POST", 1))
        response = await read_response(reader)
    assert response.status == 405
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize("connection", [b"", b"Connection: keep-alive\r\n"])
async def test_upgrade_without_connection_upgrade_is_426(connection: bytes) -> None:
    """'Upgrade: websocket' without 'Connection: Upgrade' gets 426 saying so, not 404."""
    request = upgrade_request().replace(b"Connection: Upgrade\r\n", connection)
    async with serve(echo_hub()) as s, raw_connection(s.port) as (reader, writer):
        writer.write(request)
        response = await read_response(reader)
        assert response.status == 426
        assert b"Connection: Upgrade" in response.body
        assert response.headers["upgrade"] == "websocket"
        assert await read_eof(reader) == b""


async def test_invalid_handshake_is_400() -> None:
    """An upgrade request without a valid Sec-WebSocket-Version gets 400 and a close."""
    async with serve(echo_hub()) as s, raw_connection(s.port) as (reader, writer):
        writer.write(upgrade_request().replace(b"Version: 13", b"Version: 8"))
        response = await read_response(reader)
        assert response.status in (400, 426)
        assert await read_eof(reader) == b""


async def test_frames_sent_with_the_handshake_are_read() -> None:
    """Frames written in the same packet as the upgrade request are not lost."""
    async with serve(echo_hub()) as s, raw_connection(s.port) as (reader, writer):
        writer.write(upgrade_request() + frame(TEXT, b"early") + frame(TEXT, b"bird"))
        assert (await read_response(reader, head_only=True)).status == 101
        assert await read_frame(reader) == (TEXT, b"early")
        assert await read_frame(reader) == (TEXT, b"bird")


# -- WebSocket faults ---------------------------------------------------------------


async def test_client_close_is_echoed_and_tcp_closed() -> None:
    """A client close frame is echoed with the same code, then the server closes TCP."""
    async with serve(echo_hub()) as s, raw_websocket(s.port) as (reader, writer):
        writer.write(close_frame(1000, "done"))
        assert await read_close(reader) == (1000, "done")
        assert await read_eof(reader) == b""


async def test_invalid_utf8_closes_1007() -> None:
    """A text frame that is not valid UTF-8 gets close 1007 and the TCP connection closed."""
    async with serve(echo_hub()) as s, raw_websocket(s.port) as (reader, writer):
        writer.write(frame(TEXT, b"ok"))
        assert await read_frame(reader) == (TEXT, b"ok")
        writer.write(frame(TEXT, b"caf\xc3("))
        code, _ = await read_close(reader)
        assert code == 1007
        assert await read_eof(reader) == b""


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(frame(TEXT, b"x", rsv=0b100), id="rsv1"),
        pytest.param(frame(TEXT, b"x", rsv=0b001), id="rsv3"),
        pytest.param(frame(TEXT, b"x", mask=False), id="unmasked"),
        pytest.param(frame(0xB, b"x"), id="reserved-opcode"),
        pytest.param(frame(PING, b"x" * 200), id="long-ping"),
    ],
)
async def test_malformed_frame_closes_1002_others_served(bad: bytes) -> None:
    """A malformed frame closes that connection with 1002; another client keeps being served."""
    async with (
        serve(echo_hub()) as s,
        connect(s.ws("/echo")) as other,
        raw_websocket(s.port) as (reader, writer),
    ):
        writer.write(bad)
        code, _ = await read_close(reader)
        assert code == 1002
        assert await read_eof(reader) == b""
        await other.send("fine")
        assert await asyncio.wait_for(other.recv(), UNIT) == "fine"


# -- keepalive -------------------------------------------------------------------


async def test_keepalive_closes_a_client_that_never_answers() -> None:
    """A client that never answers pings is closed with 1011 'keepalive ping timeout'."""
    hub = fast_hub(ping_interval=TICK, ping_timeout=TICK)
    async with serve(hub) as s, raw_websocket(s.port) as (reader, _):
        assert (await read_frame(reader))[0] == PING
        assert await read_close(reader) == (1011, "keepalive ping timeout")
        assert await read_eof(reader) == b""


async def test_keepalive_keeps_clients_that_answer() -> None:
    """Clients that answer pings stay connected; one that stops answering is then closed."""
    hub = fast_hub(ping_interval=TICK, ping_timeout=GRACE)
    async with (
        serve(hub) as s,
        connect(s.ws("/echo"), ping_interval=None) as client,
        raw_websocket(s.port) as (reader, writer),
    ):
        for _ in range(2):  # two rounds: the raw client answers like a browser would
            opcode, payload = await read_frame(reader)
            assert opcode == PING
            writer.write(frame(PONG, payload))
        assert (await read_frame(reader))[0] == PING  # now it goes quiet
        assert await read_close(reader) == (1011, "keepalive ping timeout")
        # The websockets client answered every ping meanwhile and is still served.
        await client.send("still here")
        assert await asyncio.wait_for(client.recv(), UNIT) == "still here"
        assert client.close_code is None


async def test_client_ignoring_the_close_frame_is_dropped() -> None:
    """A client that never answers the server's close frame is dropped after Timeouts.close."""
    hub = fast_hub(close=TICK)
    returned = asyncio.Event()

    @hub.websocket("/close")
    async def close(ws: WebSocket) -> None:
        await ws.close(4001, "x")  # returns once the connection is really closed
        returned.set()

    async with serve(hub) as s, raw_websocket(s.port, "/close") as (reader, _):
        assert await read_close(reader) == (4001, "x")
        assert await dropped(reader)
        await asyncio.wait_for(returned.wait(), UNIT)


async def test_keepalive_counts_any_data_as_alive() -> None:
    """A client that keeps sending messages but never pongs is not closed by keepalive."""
    hub = fast_hub(ping_interval=TICK, ping_timeout=GRACE)
    async with serve(hub) as s, raw_websocket(s.port) as (reader, writer):
        pings = 0
        while pings < 2:
            writer.write(frame(TEXT, b"busy"))
            opcode, payload = await read_frame(reader)
            assert opcode in (TEXT, PING), (opcode, payload)
            pings += opcode == PING


async def test_health_counts_connections_and_websockets() -> None:
    """/healthz reports open connections and WebSockets, and status ok."""
    async with serve(echo_hub()) as s, connect(s.ws("/echo")), raw_connection(s.port) as (r, w):
        w.write(GET % b"/healthz")
        response = await read_response(r)
    report = json.loads(response.body)
    assert response.headers["content-type"] == "application/json"
    assert report["status"] == "ok"
    assert report["connections"] == 2
    assert report["websockets"] == 1


def _refused_while_sending(port: int) -> bytes:
    """Send a bad request head, wait for the answer without reading it, send more, then
    read: what a client still sending when the server refuses it gets (blocking socket)."""
    with socket.create_connection(("127.0.0.1", port), timeout=UNIT) as sock:
        sock.sendall(b"BLAH\x00 / HTTP/1.1\r\n\r\n")
        sock.recv(1, socket.MSG_PEEK)  # the answer is here, unread
        sock.sendall(b"more of what the client was sending\r\n")
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


async def test_an_answer_survives_a_client_still_sending() -> None:
    """A client still sending when its request is refused reads the whole answer, then EOF:
    the server half-closes and drops what follows until the client's EOF (RFC 9112 §9.6)
    rather than closing at once, when its kernel would answer those bytes with a reset
    that can erase the answer before the client reads it."""
    async with serve(routes_hub()) as s:
        received = await asyncio.to_thread(_refused_while_sending, s.port)
        assert received.startswith(b"HTTP/1.1 400 ")
        await asyncio.wait_for(until(lambda: not s.server.connections), UNIT)
