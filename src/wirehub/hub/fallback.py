"""``Fallback``: the event endpoint over plain HTTP, for clients whose WebSocket fails.

Three routes next to the event endpoint (``/ws`` by default; docs/PROTOCOL.md §14):

- ``POST /ws/open`` opens a session: the same checks as a WebSocket
  handshake (origin, capacity, handshakes per address, authentication), then
  a ``Peer`` like any other. The body may carry the first messages. Answer:
  ``{"session": id, "key": key, ...}``.
- ``GET /ws/poll?session=ID&ack=N`` takes the records after the first N: a
  long-poll, or with ``&stream=1`` a stream (chunked, ``X-Accel-Buffering:
  no``) that passes records on as they come.
- ``POST /ws/send?session=ID&seq=N`` brings messages numbered from N.

Every request but ``open`` carries the session's key in the ``Wirehub-Key``
header: the id alone (the only thing in URLs, so in proxy logs) is not
enough to use a session. Browser requests are checked for their origin like
handshakes (``allowed_origins``; a page of another origin also needs the
hub's ``cors_origins`` to read the answers); bodies are bounded by
``Limits.max_body_size`` and each message by ``Limits.max_message_size``.

A session lives on the node that opened it. A poll or POST reaching another
worker or node is served through the broker (``hub/relay.py``), so no
sticky load balancing is needed — Phoenix's LongPoll transport and
Centrifugo's emulation endpoint route the same way; Socket.IO's long-polling,
which keeps sessions in the process, needs stickiness instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import inspect
import logging
import secrets
from collections.abc import AsyncIterator

from wirehub.http.messages import Request, Response
from wirehub.http.routing import Router
from wirehub.hub.http_transport import HttpTransport, Receiver
from wirehub.hub.node import Node
from wirehub.hub.relay import Relay
from wirehub.hub.transport import Endpoint
from wirehub.protocol.fallback import FramingError, parse_body
from wirehub.security.admission import Gate

__all__ = ["KEY_HEADER", "Fallback"]

logger = logging.getLogger("wirehub.hub")

KEY_HEADER = "Wirehub-Key"
RECORDS = "application/octet-stream"
NO_STORE = ("Cache-Control", "no-store")
# Proxies must pass a stream on as it comes (nginx reads this header).
STREAM_HEADERS = [NO_STORE, ("X-Accel-Buffering", "no")]


class Fallback:
    """The HTTP fallback of the event endpoint at ``path``: its routes and its sessions.

    ``endpoint`` is the event endpoint itself: it admits (authenticates) and
    opens sessions as it does WebSocket connections; ``gate`` is the hub's
    admission control; the routes are added to ``router``.
    """

    def __init__(
        self, node: Node, router: Router, gate: Gate, endpoint: Endpoint, path: str
    ) -> None:
        self.node = node
        self.gate = gate
        self.endpoint = endpoint
        self.path = path
        self.sessions: dict[str, HttpTransport] = {}
        self.relay = Relay(node, self)
        self.closing = False
        for name, methods, handler in (
            ("open", {"POST"}, self._open),
            ("poll", {"GET"}, self._poll),
            ("send", {"POST"}, self._send),
        ):
            router.add_http(f"{path}/{name}", methods, handler)

    # -- lifecycle (the hub and the server call these) --------------------------------

    async def start(self) -> None:
        """The hub started: listen for relayed requests; accept sessions again."""
        self.closing = False
        await self.relay.start()

    def shutdown(self, code: int) -> None:
        """The server stops: close every session with ``code`` and end relayed requests."""
        self.closing = True
        reason = "server shutting down" if code == 1001 else "server restarting"
        for transport in list(self.sessions.values()):
            transport.close(code, reason)
        self.relay.shutdown()

    def closed(self, transport: HttpTransport) -> None:
        """A session closed: release its place in the gate (it still answers polls)."""
        self.gate.release(transport.request)

    def forget(self, transport: HttpTransport) -> None:
        if self.sessions.get(transport.sid) is transport:
            del self.sessions[transport.sid]

    # -- serving a session's requests (here, or for another node through the relay) -------

    def receive_here(self, sid: str, key: str, ack: int, receiver: Receiver) -> int:
        """Serve a receive request for a session of this node; the HTTP status."""
        transport = self._session(sid, key)
        if isinstance(transport, int):
            return transport
        try:
            transport.receive(ack, receiver)
        except ValueError as exc:
            logger.info("fallback session %s: %s", sid, exc)
            return 400
        return 200

    def send_here(
        self, sid: str, key: str, seq: int, body: bytes
    ) -> tuple[int, asyncio.Future[None] | None]:
        """Serve a POST for a session of this node: its status, and what to await first."""
        transport = self._session(sid, key)
        if isinstance(transport, int):
            return transport, None
        try:
            received = parse_body(body, self.node.limits.max_message_size)
        except FramingError as exc:
            logger.info("fallback session %s: bad body: %s", sid, exc.reason)
            transport.close(exc.code, exc.reason)
            return (413 if exc.code == 1009 else 400), None
        try:
            waiter = transport.deliver(seq, received.messages)
        except ValueError as exc:
            logger.info("fallback session %s: %s", sid, exc)
            transport.close(1002, "messages missing")
            return 409, None
        if received.close is not None:
            transport.close(*received.close)
        return 204, waiter

    def _session(self, sid: str, key: str) -> HttpTransport | int:
        transport = self.sessions.get(sid)
        if transport is None:
            return 410
        if not hmac.compare_digest(key.encode(), transport.key.encode()):
            self.node.stats["fallback_bad_key"] += 1
            return 403
        return transport

    # -- routes ------------------------------------------------------------------------

    async def _open(self, request: Request) -> Response:
        refusal = self.gate.admit(request)  # origin, capacity, handshakes per address
        if refusal is not None:
            return refusal
        try:
            response = await self._admitted(request)
        except BaseException:
            self.gate.release(request)
            raise
        if response.status != 200:
            self.gate.release(request)
        return response

    async def _admitted(self, request: Request) -> Response:
        endpoint = self.endpoint
        verdict = endpoint.admit(request)  # authentication, as for a handshake
        if inspect.isawaitable(verdict):
            try:
                async with asyncio.timeout(self.node.timeouts.auth):
                    verdict = await verdict
            except TimeoutError:
                return Response.error(503, "authentication did not finish in time")
        if verdict is not None:
            return verdict
        if self.closing:
            return Response.error(503, "server shutting down")
        try:
            received = parse_body(request.body, self.node.limits.max_message_size)
        except FramingError as exc:
            return Response.error(413 if exc.code == 1009 else 400, exc.reason)
        node = self.relay.name
        sid = f"{node}.{secrets.token_urlsafe(16)}"
        key = secrets.token_urlsafe(24)
        # The peer keeps the request for its life: not its body.
        transport = HttpTransport(self, dataclasses.replace(request, body=b""), sid, key)
        self.sessions[sid] = transport
        self.node.stats["fallback_sessions"] += 1
        transport.session = endpoint.open(transport)
        transport.deliver(0, received.messages)
        if received.close is not None:
            transport.close(*received.close)
        answer = {"session": sid, "key": key, "poll": self.node.timeouts.poll}
        response = Response.json(answer)
        response.headers.append(NO_STORE)
        return response

    async def _poll(self, request: Request) -> Response:
        if request.method != "GET":  # HEAD: a poll without its records makes no sense
            response = Response.error(405)
            response.headers.append(("Allow", "GET"))
            return response
        parsed = self._parse(request, "ack")
        if isinstance(parsed, Response):
            return parsed
        sid, key, ack = parsed
        stream = request.query.get("stream") == "1"
        records = _Records(stream)
        if self._here(sid):
            status = self.receive_here(sid, key, ack, records)
        else:
            status = await self.relay.receive(sid, key, ack, records)
        if status != 200:
            return _status(status)
        if stream:
            answer = Response(200, content_type=RECORDS, headers=list(STREAM_HEADERS))
            answer.stream = self._stream(sid, records)
        else:
            # A client gone (a killed browser) leaves no request in flight: the session's
            # idle expiry (Timeouts.session) starts now, not after Timeouts.poll.
            request.on_client_gone(lambda: self._abandon(sid, records))
            body = await records.body()
            answer = Response(200, body, RECORDS, [NO_STORE]) if body else Response(204)
        return answer

    async def _send(self, request: Request) -> Response:
        parsed = self._parse(request, "seq")
        if isinstance(parsed, Response):
            return parsed
        sid, key, seq = parsed
        if self._here(sid):
            status, waiter = self.send_here(sid, key, seq, request.body)
            if waiter is not None:
                await waiter
        else:
            status = await self.relay.send(sid, key, seq, request.body)
        return _status(status)

    def _abandon(self, sid: str, records: _Records) -> None:
        """A receive request is over (its client may have gone): stop writing to it."""
        transport = self.sessions.get(sid)
        if transport is not None:
            transport.abandon(records)
        records.end()

    async def _stream(self, sid: str, records: _Records) -> AsyncIterator[bytes]:
        try:
            async for chunk in records.chunks():
                yield chunk
        finally:  # ended, or the client went away: stop writing to it
            self._abandon(sid, records)

    def _parse(self, request: Request, counter: str) -> tuple[str, str, int] | Response:
        """Origin, session id, key and the request's count; or the refusal."""
        origin = request.headers.get("origin")
        if origin is not None and not self.gate.origins.allows(origin, request.headers.get("host")):
            self.node.stats["refused_origin"] += 1
            return Response.error(403, "origin not allowed")
        sid = request.query.get("session", "")
        key = request.headers.get(KEY_HEADER, "")
        try:
            count = int(request.query.get(counter, ""))
        except ValueError:
            count = -1
        if not sid or not key or count < 0:
            detail = f"give ?session=ID&{counter}=N and the {KEY_HEADER} header"
            return Response.error(400, detail)
        return sid, key, count

    def _here(self, sid: str) -> bool:
        """Whether session ``sid`` is (or was) this node's; else the relay asks its node."""
        return sid.partition(".")[0] == self.relay.name or not self.relay.shared


class _Records:
    """A receive request answered by this node: what the session (or its relay) writes."""

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

    def write(self, chunk: bytes) -> None:
        self._chunks.put_nowait(chunk)

    def end(self) -> None:
        self._chunks.put_nowait(None)

    async def body(self) -> bytes:
        """A long-poll's body: everything written until the end."""
        parts = []
        while (chunk := await self._chunks.get()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        """A stream's chunks, as they come."""
        while (chunk := await self._chunks.get()) is not None:
            yield chunk


def _status(status: int) -> Response:
    if status in (200, 204):
        return Response(status)
    detail = {
        400: "bad request for this session",
        403: "wrong session key",
        409: "messages went missing; the session is closed",
        410: "no such session (expired, closed, or its node is gone): open a new one",
        413: "message too big; the session is closed",
        503: "the session's node cannot be reached now",
    }.get(status, "")
    return Response.error(status, detail)
