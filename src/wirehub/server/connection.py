"""One TCP connection: HTTP/1.1 until an upgrade, then one WebSocket.

An ``asyncio.Protocol``: reads are driven by ``data_received`` (no task per
message). Outgoing bytes are queued and written once per event-loop tick per
connection, so a burst of broadcasts costs one ``writelines`` per receiver
rather than one ``send()`` per frame (DESIGN.md, performance rule 4).

What bounds a connection, whatever the client does (docs/security.md, "Limits"):

- while its unsent bytes are above the write-buffer high-water mark, its
  socket is not read: answers to its own input (pongs, HTTP responses,
  acks) cannot pile up faster than it takes them;
- every close, whoever starts it (the application, the engine after a
  protocol error, the keepalive, the client, an HTTP ``Connection: close``),
  ends within ``Timeouts.close``: then the socket is dropped;
- once the server starts closing a WebSocket, nothing more it reads is
  handed to the application;
- the keepalive does not count the time its ping waited behind our own
  unsent data.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol, cast

from wirehub.codes import CloseCode, with_retry_after
from wirehub.http.messages import Request, Response
from wirehub.http.parser import RequestParser
from wirehub.http.routing import Router
from wirehub.hub.transport import Endpoint, Session
from wirehub.protocol.websocket import (
    Message,
    WebSocketProtocol,
    close_reason,
    ping_payload,
)

if TYPE_CHECKING:
    from wirehub.hub.hub import Hub

__all__ = ["Connection", "Host"]

logger = logging.getLogger("wirehub.server")
access_logger = logging.getLogger("wirehub.access")  # one INFO line per handshake


class Host(Protocol):
    """What a connection needs of its server (``serve.Server``), so this module
    does not import the one that imports it."""

    hub: Hub
    router: Router
    loop: asyncio.AbstractEventLoop
    connections: set[Connection]
    tasks: set[asyncio.Task[None]]
    closing: bool

    def mark_dirty(self, connection: Connection) -> None: ...

    def http_response(self, request: Request) -> Response | Awaitable[Response]: ...

    def websocket_opened(self) -> None: ...

    def connection_closed(self) -> None: ...


OVERLOAD_GRACE = 1.0
"""Seconds a connection past the socket budget gets to send its request (else
closed): it holds a descriptor the server is short of."""


class Connection(asyncio.Protocol):
    """HTTP then WebSocket on one socket; implements the hub's ``Transport``."""

    __slots__ = (
        "_admitted",
        "_answering",
        "_backlog",
        "_busy",
        "_close_armed",
        "_drain_waiters",
        "_early",
        "_eof",
        "_high_water",
        "_lingering",
        "_lost",
        "_open",
        "_opened",
        "_out",
        "_out_size",
        "_overloaded",
        "_pending",
        "_ping_behind",
        "_ping_end",
        "_ping_progress",
        "_queued",
        "_read_stopped",
        "_reading_paused",
        "_request",
        "_rx",
        "_streaming",
        "_timer",
        "_written",
        "closing",
        "hub",
        "loop",
        "parser",
        "server",
        "session",
        "shares_deflate",
        "transport",
        "writing_paused",
        "ws",
    )  # tens of thousands of these may be idle at once: no per-instance dict

    kind = "websocket"  # the hub's Transport.kind

    def __init__(self, server: Host) -> None:
        self.server = server
        self.hub = server.hub
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.ws: WebSocketProtocol | None = None
        self.session: Session | None = None
        self._request: Request | None = None
        self._out: list[bytes] = []  # bytes waiting for this tick's flush
        self._out_size = 0  # their total length
        self._high_water = server.hub.limits.write_buffer_high
        self._backlog = 0  # the transport's unsent bytes when last flushed
        self._open = False  # a WebSocket is open: frames may be queued
        self._reading_paused = False  # paused by the hub (flow control)
        self._queued = False  # in the server's dirty list
        self._eof = False  # close the socket after the next flush
        self._lingering = False  # half-closed after an answer: dropping what the client sends
        self._busy = False  # an async HTTP handler is running
        self._pending: collections.deque[Request] = collections.deque()  # held back, in order
        self.writing_paused = False  # unsent bytes above the high-water mark
        self.shares_deflate = False  # takes deflated broadcast frames
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._close_armed = False  # the timer now is the close deadline: nothing replaces it
        self.closing = False  # a close started (either side): what it reads is not handled
        self._read_stopped = False  # the transport's reading is paused (for any reason)
        self._written = 0  # bytes handed to the transport so far
        self._rx = False  # any bytes received since the last ping
        self._ping_end = 0  # where the last ping ends in the stream of bytes written
        self._ping_progress = 0  # bytes sent as of the last look at that ping
        self._ping_behind = False  # the ping had not left our buffer at the last look
        self._lost = False
        self._overloaded = False  # past the socket budget: answer /healthz or 503, then close
        self._admitted: Request | None = None  # let through by the hub's Gate: release it
        self._early: list[bytes] | None = None  # bytes read while an admission check runs
        self._streaming: asyncio.Task[None] | None = None  # writing a streamed response
        self._answering: Request | None = None  # the request an async handler answers

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self._opened = self.loop.time()
        limits = self.hub.limits
        transport.set_write_buffer_limits(
            high=limits.write_buffer_high, low=limits.write_buffer_low
        )
        peer = transport.get_extra_info("peername")
        client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        scheme = "https" if transport.get_extra_info("sslcontext") is not None else "http"
        self.parser = RequestParser(
            limits, client=client, scheme=scheme, trusted_proxies=self.hub.trusted_proxies
        )
        self.server.connections.add(self)
        if self.hub.gate.overloaded(len(self.server.connections)):
            self._overloaded = True  # answered at once, so it holds its descriptor briefly
            self._set_timer(
                min(self.hub.timeouts.handshake or OVERLOAD_GRACE, OVERLOAD_GRACE),
                self._head_timeout,
            )
            return
        self._set_timer(self.hub.timeouts.handshake, self._head_timeout)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of what the client was sending when it was answered
        if self.ws is not None:
            self._rx = True
            self._websocket_data(data)
            return
        if self._early is not None:  # the handshake's admission is still running
            self._early.append(data)
            return
        had_head = self.parser.in_progress
        for request in self.parser.feed(data):
            self._http_request(request)
        if self.parser.error is not None:
            self._answer_parse_error()
        elif self.parser.in_progress and not had_head and not self._busy:
            self._set_timer(self.hub.timeouts.handshake, self._head_timeout)

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            self.ws.receive_eof()
            self._move_protocol_output()
        self._arm_close()  # the transport closes once its buffer is sent: if ever
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.parser.close()  # freed now, not by the garbage collector
        self._open = False
        self._cancel_timer()
        self.server.connections.discard(self)
        if self._streaming is not None:
            self._streaming.cancel()  # nobody reads it any more
        if self._answering is not None:
            self._answering.client_gone()  # a long-poll ends now, not at its timeout
        if self._admitted is not None:
            self.hub.gate.release(self._admitted)
            self._admitted = None
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self.session is not None:
            assert self.ws is not None
            session, self.session = self.session, None
            session.connection_lost(self.ws.close_code, self.ws.close_reason)
        self.server.connection_closed()

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._update_reading()  # a client that does not read is not read either

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._backlog = self.hub.limits.write_buffer_low  # at most this much is left
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._pending:
            self._run_pending()
        if self.session is not None:
            self.session.writing_resumed()
        self._update_reading()

    def _update_reading(self) -> None:
        """Read the socket unless something holds it: the hub's flow control, an
        admission check still running, or our own unsent bytes above the mark.

        Stopping at the mark bounds every answer to the client's own input —
        pongs, HTTP responses to pipelined requests, acks and errors — by
        what it reads, not by what it sends."""
        stop = self._reading_paused or self.writing_paused or self._early is not None
        if stop is self._read_stopped or self.transport is None or self._lost:
            return
        self._read_stopped = stop
        if stop:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    # -- HTTP ----------------------------------------------------------------

    def _http_request(self, request: Request) -> None:
        if self._eof:
            # An earlier request ended the connection ("Connection: close"):
            # requests pipelined after it are not processed (RFC 9112 §9.6).
            return
        if self._busy or self._pending or self.writing_paused:
            # Answers go out in request order: none while a handler runs, and
            # none while the client has not taken the ones before (a pipelined
            # flood of requests for a big page would otherwise buffer them all).
            self._pending.append(request)
            return
        self._handle_http(request)

    def _handle_http(self, request: Request) -> None:
        self._cancel_timer()
        if self._overloaded and request.path != "/healthz":
            self._write_response(self.hub.gate.at_capacity(request), keep_alive=False)
            return
        if request.is_websocket:
            self._upgrade(request)
            return
        result = self.server.http_response(request)
        if inspect.isawaitable(result) or result.stream is not None:
            self._busy = True
            self._answering = request
            task = self.loop.create_task(self._await_response(request, result))
            self.server.tasks.add(task)
            task.add_done_callback(self.server.tasks.discard)
        else:
            self._finish_http(request, result)

    async def _await_response(self, request: Request, pending: Any) -> None:
        try:
            response = await pending if inspect.isawaitable(pending) else pending
            if not isinstance(response, Response):
                raise TypeError(f"HTTP handler returned {type(response).__name__}, not Response")
        except Exception:
            logger.exception("HTTP handler for %s %s failed", request.method, request.path)
            response = Response.error(500)
        if response.stream is not None and not await self._write_stream(request, response):
            return
        self._busy = False
        self._answering = None
        self._finish_http(request, response)
        self._run_pending()

    def _run_pending(self) -> None:
        """Handle the requests held back, in order, as long as nothing holds them."""
        while self._pending and not (self._busy or self.writing_paused or self._eof or self._lost):
            self._handle_http(self._pending.popleft())
        if self.parser.error is not None:
            self._answer_parse_error()

    async def _write_stream(self, request: Request, response: Response) -> bool:
        """Write a streamed response's head, then each chunk as it comes (RFC 9112 §7.1).

        False when it could not end well: the connection is closed without
        the last chunk, so the client sees the body was cut.
        """
        assert response.stream is not None
        keep_alive = request.keep_alive and not self.server.closing
        try:
            self._queue(response.serialize(keep_alive=keep_alive))
        except ValueError as exc:  # from the application: a bad status or header
            logger.error("cannot send the response to %s: %s; answering 500", self._client, exc)
            self._write_response(Response.error(500), keep_alive=False)
            return False
        self._streaming = asyncio.current_task()
        try:
            async for chunk in response.stream:
                if self._lost:
                    return False
                if chunk:
                    self._queue(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    await self.drain()
        except Exception:
            logger.exception("the stream answering %s %s failed", request.method, request.path)
            self._abort()
            return False
        finally:
            self._streaming = None
        return not self._lost

    def _answer_parse_error(self) -> None:
        """Answer the request the parser refused (400, 413, 414, 431), then close.

        Responses go out in request order, so this waits while an earlier
        request is still being handled (``_await_response`` calls it again),
        and is skipped if an earlier response already ended the connection.
        """
        error = self.parser.error
        if error is None or self._busy or self._pending or self._eof:
            return
        self._write_response(error, keep_alive=False)
        logger.info("bad request from %s: %d", self.parser._client, error.status)

    def _finish_http(self, request: Request, response: Response) -> None:
        keep_alive = (
            request.keep_alive
            and self.parser.upgrade_data is None
            and not self.server.closing
            and not self._overloaded
        )
        self._write_response(response, keep_alive=keep_alive, head_only=request.method == "HEAD")
        if keep_alive and not self._busy:
            if self.parser.in_progress:
                # A head that arrived while a handler ran had no timer (the
                # running request cancelled it): time it from now (slowloris).
                self._set_timer(self.hub.timeouts.handshake, self._head_timeout)
            else:
                self._set_timer(self.hub.timeouts.idle_http, self._idle_timeout)

    def _write_response(
        self, response: Response, *, keep_alive: bool, head_only: bool = False
    ) -> None:
        if self.transport is None or self._lost:
            return
        if response.stream is not None:
            self._queue(b"0\r\n\r\n")  # the head and the chunks went out already
        else:
            try:
                head = response.serialize(keep_alive=keep_alive, head_only=head_only)
            except ValueError as exc:  # from the application: a bad status or header
                logger.error("cannot send the response to %s: %s; answering 500", self._client, exc)
                head = Response.error(500).serialize(keep_alive=keep_alive, head_only=head_only)
            self._queue(head)
        if not keep_alive:
            self._eof = True

    @property
    def _client(self) -> tuple[str, int] | None:
        return self.parser._client

    def _head_timeout(self) -> None:
        if self.parser.in_progress:
            logger.info("request head from %s not complete in time; closing", self.parser._client)
            self._write_response(
                Response.error(408, "request head not received in time"), keep_alive=False
            )
        else:
            self._abort()

    def _idle_timeout(self) -> None:
        self._abort()

    # -- WebSocket -----------------------------------------------------------

    def _upgrade(self, request: Request) -> None:
        matched = self.server.router.match_websocket(request.path)
        if matched is None:
            self._refuse(request, Response.error(404, "no WebSocket endpoint here"))
            return
        endpoint: Endpoint = matched[0]
        request.path_params = matched[1]
        if request.method != "GET":
            response = Response.error(405, "a WebSocket handshake uses GET")
            response.headers.append(("Allow", "GET"))
            self._refuse(request, response)
            return
        if self.parser.upgrade_data is None:
            # "Upgrade: websocket" without "Connection: Upgrade": HTTP does not
            # switch protocols (RFC 9110 §7.8), so this is no handshake. Say
            # what is missing rather than 404 for a route that does exist.
            response = Response.error(426, "a WebSocket handshake needs 'Connection: Upgrade'")
            response.headers.append(("Upgrade", "websocket"))
            self._refuse(request, response)
            return
        # Before the upgrade: the hub's Gate (origin, capacity, per-address
        # limits), then the endpoint's own check (authentication).
        refusal = self.hub.gate.admit(request)
        if refusal is not None:
            self._refuse(request, refusal)
            return
        self._admitted = request
        verdict = endpoint.admit(request)
        if verdict is None:
            self._accept(endpoint, request)
        elif isinstance(verdict, Response):
            self._refuse(request, verdict)
        else:
            self._admit_later(endpoint, request, verdict)

    def _refuse(self, request: Request, response: Response) -> None:
        """Answer a handshake with an HTTP error instead of 101, and close."""
        self._log_handshake(request, response.status)
        self._write_response(response, keep_alive=False)

    def _log_handshake(self, request: Request, status: int) -> None:
        """The access log line of a handshake (never the query: it may hold a token)."""
        if access_logger.isEnabledFor(logging.INFO):
            duration = (self.loop.time() - self._opened) * 1000
            access_logger.info(
                '%s "%s %s" %d %.1fms',
                request.client_ip or "-",
                request.method,
                request.path,
                status,
                duration,
                extra={
                    "client": request.client_ip,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round(duration, 3),
                },
            )

    def _admit_later(
        self, endpoint: Endpoint, request: Request, pending: Awaitable[Response | None]
    ) -> None:
        """Await an async admission check (an auth hook) with reading paused."""
        self._busy = True  # like an async HTTP handler: shutdown lets it finish
        self._early = []
        self._update_reading()
        task = self.loop.create_task(self._await_admission(endpoint, request, pending))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    async def _await_admission(
        self, endpoint: Endpoint, request: Request, pending: Awaitable[Response | None]
    ) -> None:
        try:
            async with asyncio.timeout(self.hub.timeouts.auth):
                response = await pending
        except TimeoutError:
            logger.warning("authentication of %s did not finish in time", request.client)
            response = Response.error(503, "authentication did not finish in time")
        except Exception:
            logger.exception("the admission check of %s failed", request.path)
            response = Response.error(500)
        self._busy = False
        if self._lost:
            return
        if response is None and self.server.closing:
            response = Response.error(503, "server shutting down")
        if response is not None:
            self._refuse(request, response)  # reading stays paused
            return
        self._accept(endpoint, request)

    def _accept(self, endpoint: Endpoint, request: Request) -> None:
        """Complete the handshake (101, or the engine's 400) and open the session."""
        ws = WebSocketProtocol(
            max_message_size=self.hub.limits.max_message_size,
            compression=self.hub.compression,
            subprotocols=endpoint.subprotocols,
        )
        handshake = ws.accept(request.path, request.headers)
        self.ws = ws
        self._request = request
        early = (self.parser.upgrade_data or b"") + b"".join(self._early or ())
        self._early = None
        self._log_handshake(request, handshake.status_code)
        if handshake.status_code != 101:
            self._move_protocol_output()
            logger.info("handshake from %s refused: %d", request.client, handshake.status_code)
            return
        # The 101 waits for the callbacks already scheduled, so that what the
        # session sends at once (the welcome, from a connect handler's first
        # step) leaves in the same write: one instead of two per handshake
        # (bench/README.md, "Handshake profile").
        self._queued = True  # not in the server's dirty list: sends queue behind the 101
        self._move_protocol_output()
        self.server.websocket_opened()
        self.shares_deflate = ws.shares_deflate
        self._schedule_ping()  # before the session opens: it may close at once
        try:
            self.session = endpoint.open(self)
        except Exception:  # contained to this connection, never out of data_received
            logger.exception("opening the session of %s failed; closing", request.path)
            self.close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        finally:
            self.loop.call_soon(self._flush_held)  # after the session's first step
        if early:
            self.data_received(early)
        self._update_reading()

    def _flush_held(self) -> None:
        if self._queued and not self._lost:
            self.flush()

    def _websocket_data(self, data: bytes) -> None:
        assert self.ws is not None
        messages = self.ws.receive_data(data)
        session = self.session
        # Messages that came before the client's close frame in this read are
        # still handled, and answered before the close reply (``_open`` holds
        # until the engine's output moves); after the server began closing,
        # nothing is.
        if session is not None and messages:
            for message in messages:
                if self.closing:
                    break
                try:
                    session.message_received(message)
                except Exception:  # a Session must not raise: contain it to this connection
                    logger.exception("handling a message from %s failed; closing", self._client)
                    self.close(CloseCode.INTERNAL_ERROR, "internal error")
        if self.ws.pongs is not None:  # for ws.ping() and ws.latency (hub.websocket)
            pongs, self.ws.pongs = self.ws.pongs, None
            receive = getattr(session, "pong_received", None)
            if receive is not None:
                for payload in pongs:
                    receive(payload)
        self._move_protocol_output()

    def _move_protocol_output(self) -> None:
        """Move the engine's output (pongs, close frames, sends) to the write queue."""
        assert self.ws is not None
        for chunk in self.ws.data_to_send():
            if chunk:
                self._queue(chunk)
            else:  # the engine asks us to close the TCP connection
                self._eof = True
                self._queue(b"")
        self._open = self.ws.open
        if not self._open:  # closing, whoever started it: it ends in time
            self.closing = True
            self._arm_close()

    def _schedule_ping(self) -> None:
        interval = self.hub.timeouts.ping_interval
        if interval is not None:
            self._set_timer(interval, self._send_ping)

    def _send_ping(self) -> None:
        if self.ws is None or not self.ws.open:
            return
        self._rx = False
        ahead = self.buffered
        self.ws.send_ping(ping_payload(time.monotonic()))  # its pong measures ws.latency
        self._move_protocol_output()
        self._ping_end = self._written + self._out_size
        self._ping_progress = self._sent()
        self._ping_behind = ahead > 0
        timeout = self.hub.timeouts.ping_timeout
        if timeout is not None:
            self._set_timer(timeout, self._check_pong)

    def _sent(self) -> int:
        """Bytes that left our buffers for the kernel (so far as the transport tells)."""
        assert self.transport is not None
        return self._written - self.transport.get_write_buffer_size()

    def _check_pong(self) -> None:
        # The pong, or any other data, proves the client is there. While we
        # are not reading (flow control), its pong waits unread: no verdict.
        timeout = self.hub.timeouts.ping_timeout or 0.0
        if self._rx or self._reading_paused:
            interval = self.hub.timeouts.ping_interval or 0.0
            self._set_timer(max(interval - timeout, 0.0), self._send_ping)
            return
        # The timeout runs from when the ping left our buffer, not from when
        # it joined the queue behind our own unsent data: a client taking
        # that data (however slowly) is alive and gets a full timeout once
        # the ping has left; one taking nothing for a whole timeout is not.
        sent = self._sent()
        if sent < self._ping_end and sent > self._ping_progress:
            self._ping_progress, self._ping_behind = sent, True
            self._set_timer(timeout, self._check_pong)
            return
        if sent >= self._ping_end and self._ping_behind:
            self._ping_behind = False
            self._set_timer(timeout, self._check_pong)
            return
        assert self.ws is not None
        logger.info(
            "keepalive: no data from %s within %ss of a ping; closing",
            self._request.client if self._request else None,
            timeout,
        )
        self.closing = True
        self.ws.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        self._move_protocol_output()

    # -- Transport (what the hub sees) ---------------------------------------

    @property
    def request(self) -> Request:
        assert self._request is not None
        return self._request

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol if self.ws is not None else None

    def send_ping(self, payload: bytes) -> None:
        """Queue a ping frame (``ws.ping()``); the pong goes to ``session.pong_received``."""
        if self.ws is not None and self.ws.open:
            self.ws.send_ping(payload)
            self._move_protocol_output()

    @property
    def buffered(self) -> int:
        return self._out_size + (self.transport.get_write_buffer_size() if self.transport else 0)

    def send(self, message: Message) -> None:
        if self._open:
            assert self.ws is not None
            self._send_now(self.ws.frame(message))

    def send_text(self, payload: bytes) -> None:
        if self._open:
            assert self.ws is not None
            self._send_now(self.ws.text_frame(payload))

    def send_frame(self, frame: bytes) -> None:
        # The fan-out path, once per receiver: ``_queue`` inlined, flags only.
        if not self._open:
            return
        self._out.append(frame)
        self._out_size += len(frame)
        if not self._queued:
            self._queued = True
            self.server.mark_dirty(self)
        if self._out_size + self._backlog >= self._high_water:
            self.flush()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; it ends within ``Timeouts.close``.

        Raises ``ConfigError`` for a code no close frame may carry (checked
        even when the connection is already closing); a reason longer than
        123 bytes of UTF-8 is cut at a character boundary.
        """
        reason = close_reason(code, reason)
        if self.ws is None or not self.ws.open:
            return
        self.closing = True
        self.ws.close(code, reason)
        self._move_protocol_output()

    async def drain(self) -> None:
        if not self.writing_paused or self._lost:
            return
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def pause_reading(self) -> None:
        self._reading_paused = True
        self._update_reading()

    def resume_reading(self) -> None:
        self._reading_paused = False
        self._update_reading()

    # -- writing -------------------------------------------------------------

    def _send_now(self, frame: bytes) -> None:
        """A reply to this one client: the first of a tick is written at once
        (no wait for the end-of-tick flush: an echo's latency), the ones that
        follow in the same tick are queued behind it and written together."""
        if self._queued or self.transport is None or self._lost:
            self._queue(frame)
            return
        self.transport.write(frame)
        self._written += len(frame)
        self._backlog = self.transport.get_write_buffer_size()
        self._queued = True  # until the end of the tick: later sends batch
        self.server.mark_dirty(self)

    def _queue(self, data: bytes) -> None:
        if data:
            self._out.append(data)
            self._out_size += len(data)
        if not self._queued:
            self._queued = True
            self.server.mark_dirty(self)
        # A sender that never yields (a handler doing ``await ws.send(...)`` in
        # a loop while writing is not paused) would grow the queue without
        # bound before the end-of-tick flush: past the high-water mark, write
        # now, so the transport's flow control (pause_writing) engages and the
        # next send waits in drain(). Batching is kept below the mark.
        # (``_backlog`` is the transport's buffer as of the last flush: reading
        # it here instead would cost a call per frame on the fan-out path.)
        if self._out_size + self._backlog >= self._high_water:
            self.flush()

    def flush(self) -> None:
        """Write everything queued this tick in one call; called by the server."""
        self._queued = False
        out, self._out = self._out, []
        size, self._out_size = self._out_size, 0
        transport = self.transport
        if transport is None or self._lost or self._lingering:
            return
        if out:
            if len(out) == 1:
                transport.write(out[0])
            elif size + self._backlog < self._high_water:
                transport.writelines(out)
            else:  # past the mark: writelines does not pause us on CPython 3.12.0-3.12.8
                transport.write(b"".join(out))  # and 3.13.0-3.13.1 (gh-127655); write does
            self._written += size
            self._backlog = transport.get_write_buffer_size()
        if self._eof:
            # After sending what it holds; bounded by the close timer either way.
            if self._may_still_send() and transport.can_write_eof():
                # RFC 9112 §9.6: closing now, the kernel would answer what the client
                # is still sending with a reset, which can erase our answer before
                # the client reads it. Half-close; the client's EOF closes the rest.
                transport.write_eof()
                self._lingering = self.closing = True
            else:
                transport.close()
            self._arm_close()

    def _may_still_send(self) -> bool:
        """An HTTP request was refused or timed out part way: more of it may be coming."""
        return self.ws is None and (self.parser.in_progress or self.parser.error is not None)

    def shutdown(self, code: int, retry_after: float | None = None) -> None:
        """Server shutdown: close WebSockets with ``code`` (and the delay the client
        should wait before reconnecting, in the reason), idle HTTP at once."""
        if self.ws is not None:
            reason = "server shutting down" if code == 1001 else "server restarting"
            if retry_after is not None:
                reason = with_retry_after(reason, retry_after)
            self.close(code, reason)
        elif self._lingering or not (self._busy or self.parser.in_progress):
            self._abort()

    def _abort(self) -> None:
        if self.transport is not None and not self._lost:
            self.transport.abort()

    # -- timers --------------------------------------------------------------

    def _arm_close(self) -> None:
        """The connection is closing: drop it if it has not closed within ``Timeouts.close``."""
        if not self._close_armed:
            self._set_timer(self.hub.timeouts.close, self._abort)
            self._close_armed = True

    def _set_timer(self, delay: float | None, callback: Any) -> None:
        if self._close_armed:  # nothing postpones the end of a close
            return
        self._cancel_timer()
        if delay is not None and not self._lost:
            self._timer = self.loop.call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._close_armed and not self._lost:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
