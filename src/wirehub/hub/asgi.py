"""``Hub`` as an ASGI 3 application: ``uvicorn app:hub``, ``app.mount("/rt", hub)``.

Why this lives in the hub layer (``cli → server → hub → brokers → protocol``):
ASGI is an interface, not I/O. The ASGI server (uvicorn, hypercorn…) owns
the sockets, the HTTP parsing, the WebSocket framing and the event loop, as
``wirehub.server`` does on the native path; this module only translates ASGI
events into the hub's own interfaces — a ``Transport`` per WebSocket
(``AsgiTransport``), the ``Session`` its endpoint opens, ``respond`` for
plain HTTP, the hub's startup and shutdown for lifespan. A ``Hub`` must *be*
the ASGI application (``Hub.__call__``), so the adapter cannot sit above the
hub (the hub would import up), and it needs the hub's endpoints and gate, so
it cannot sit below. It imports nothing of the server, and not ``hub.py``
either: it sees the hub through ``Host``.

What a client meets is the same as on the native server: routes, the event
endpoint, authentication, origin checks, rate limits, the broker, rooms and
the delivery guarantee all live above the transport. What differs is what
the ASGI server does itself: keepalive pings (uvicorn's ``--ws-ping-interval``
instead of ``Timeouts.ping_interval``), permessage-deflate, and the per-tick
write batching of the native server (here each message is one ``send``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Protocol
from urllib.parse import quote

from websockets.datastructures import Headers

from wirehub.codes import CloseCode
from wirehub.config import Limits, Timeouts
from wirehub.http.messages import Request, Response
from wirehub.http.proxy import TrustedProxies
from wirehub.http.routing import Router
from wirehub.hub.fallback import Fallback
from wirehub.hub.lifecycle import finish
from wirehub.hub.responder import respond
from wirehub.hub.transport import Endpoint, Session
from wirehub.protocol.websocket import Message, close_reason
from wirehub.security.admission import Gate
from wirehub.security.cors import CorsPolicy

__all__ = ["AsgiApp", "AsgiTransport", "Host", "Receive", "Scope", "Send"]

logger = logging.getLogger("wirehub.asgi")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Host(Protocol):
    """What the ASGI adapter uses of a ``Hub``."""

    router: Router
    gate: Gate
    cors: CorsPolicy | None
    limits: Limits
    timeouts: Timeouts
    trusted_proxies: TrustedProxies | None
    fallback: Fallback | None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def user_tasks(self) -> list[asyncio.Task[Any]]: ...

    def health(self) -> dict[str, Any]: ...


class AsgiApp:
    """The ASGI 3 application of one hub (``Hub.__call__`` delegates here)."""

    def __init__(self, hub: Host) -> None:
        self.hub = hub
        self.transports: set[AsgiTransport] = set()
        self.started = False
        self.closing = False
        self._start_lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            raise ValueError(f"wirehub serves ASGI http, websocket and lifespan, not {kind!r}")

    # -- lifespan --------------------------------------------------------------

    async def startup(self, *, lazily: bool = False) -> None:
        """Start the hub: connect the broker, run the startup hooks."""
        async with self._start_lock:
            if self.started:
                return
            if lazily:
                logger.warning(
                    "wirehub got a request before any ASGI lifespan startup: starting the "
                    "hub now; its shutdown hooks will not run. Pass the lifespan to the hub "
                    "(FastAPI(lifespan=hub.lifespan), see docs/frameworks.md)"
                )
            await self.hub.start()
            self.started = True
            self.closing = False

    async def shutdown(self) -> None:
        """Close the hub's WebSockets (1001) and wait for them; let the user code running
        for clients finish (then cancel it), all within ``Timeouts.shutdown``; then stop
        the hub — as the native server's ``Server.shutdown`` does."""
        if not self.started:
            return
        self.closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hub.timeouts.shutdown
        if self.hub.fallback is not None:
            self.hub.fallback.shutdown(CloseCode.GOING_AWAY)
        for transport in list(self.transports):
            transport.close(CloseCode.GOING_AWAY, "server shutting down")
        if self.transports:
            ended = [transport.ended.wait() for transport in self.transports]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await asyncio.gather(*ended)
        await finish(self.hub.user_tasks, deadline - loop.time())
        self.started = False
        await self.hub.stop()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """The hub's startup and shutdown as a context manager, for a framework whose
        own lifespan is the one the ASGI server runs: ``FastAPI(lifespan=hub.lifespan)``."""
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _ensure_started(self) -> None:
        if not self.started:  # a host that runs no lifespan for us (a dispatcher, Django's)
            await self.startup(lazily=True)

    def health(self) -> dict[str, Any]:
        report = self.hub.health()
        report.update(websockets=len(self.transports), host="asgi")
        return report

    # -- HTTP --------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._ensure_started()
        request = self._request(scope)
        limit = self.hub.limits.max_body_size
        body = await _read_body(receive, limit)
        if body is None:
            response: Response = Response.error(413, f"the body is larger than {limit} bytes")
        else:
            request.body = body
            response = await self._respond(request, receive)
        if response.stream is not None and request.method != "HEAD":
            await _stream_response(receive, send, request, response)
        else:
            await _send_response(send, response, head=request.method == "HEAD")

    async def _respond(self, request: Request, receive: Receive) -> Response:
        result = respond(self.hub.router, request, health=self.health, cors=self.hub.cors)
        if isinstance(result, Response):
            return result
        # The body is read: what the server says next is that the client left.
        gone = asyncio.get_running_loop().create_task(_client_gone(receive, request))
        try:
            response = await result
        except Exception:
            logger.exception("HTTP handler for %s %s failed", request.method, request.path)
            return Response.error(500)
        finally:
            gone.cancel()
        if not isinstance(response, Response):
            logger.error("HTTP handler for %s returned %s", request.path, type(response).__name__)
            return Response.error(500)
        return response

    def _request(self, scope: Scope) -> Request:
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # mounted: route on the rest (Starlette's rule)
            path = path[len(root) :] or "/"
        headers = Headers(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
        )
        client = scope.get("client")
        scheme: str = scope.get("scheme", "http")
        return Request(
            scope.get("method", "GET"),
            quote(path, safe="/:@!$&'()*+,;=~"),
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            client=(str(client[0]), int(client[1])) if client else None,
            scheme=_HTTP_SCHEME.get(scheme, scheme),
            trusted_proxies=self.hub.trusted_proxies,
        )

    # -- WebSocket -----------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._ensure_started()
        request = self._request(scope)
        if (await receive())["type"] != "websocket.connect":
            return
        matched = self.hub.router.match_websocket(request.path)
        if matched is None:
            await _refuse(scope, send, Response.error(404, "no WebSocket endpoint here"))
            return
        endpoint: Endpoint = matched[0]
        request.path_params = matched[1]
        if self.closing:
            await _refuse(scope, send, Response.error(503, "server shutting down"))
            return
        refusal = self.hub.gate.admit(request)
        if refusal is not None:
            await _refuse(scope, send, refusal)
            return
        try:
            refusal = await self._admit(endpoint, request)
            if refusal is not None:
                await _refuse(scope, send, refusal)
                return
            offered = scope.get("subprotocols") or []
            subprotocol = next((p for p in offered if p in (endpoint.subprotocols or ())), None)
            await send({"type": "websocket.accept", "subprotocol": subprotocol})
            transport = AsgiTransport(request, subprotocol, send, self.hub)
            self.transports.add(transport)
            try:
                await transport.run(receive, endpoint.open(transport))
            finally:
                self.transports.discard(transport)
        finally:
            self.hub.gate.release(request)

    async def _admit(self, endpoint: Endpoint, request: Request) -> Response | None:
        """The endpoint's own check (authentication), awaited within ``Timeouts.auth``."""
        verdict = endpoint.admit(request)
        if verdict is None or isinstance(verdict, Response):
            return verdict
        try:
            async with asyncio.timeout(self.hub.timeouts.auth):
                return await verdict
        except TimeoutError:
            logger.warning("authentication of %s did not finish in time", request.client)
            return Response.error(503, "authentication did not finish in time")
        except Exception:
            logger.exception("the admission check of %s failed", request.path)
            return Response.error(500)


class AsgiTransport:
    """One accepted ASGI WebSocket, as the hub sees it (the hub's ``Transport``).

    Sends are queued and handed to the ASGI server's ``send`` by one writer
    task, in order; ``buffered`` counts the queued bytes, so the hub's
    backpressure and slow-consumer policy see a client that does not read
    as soon as the ASGI server stops taking messages.
    """

    kind = "websocket"
    shares_deflate = False  # the ASGI server compresses, if at all

    def __init__(self, request: Request, subprotocol: str | None, send: Send, hub: Host) -> None:
        self.request = request
        self.subprotocol = subprotocol
        self.writing_paused = False
        self.ended = asyncio.Event()
        self._send = send
        self._limits = hub.limits
        self._close_timeout = hub.timeouts.close
        self._queue: deque[tuple[MutableMapping[str, Any], int]] = deque()
        self._buffered = 0
        self._wake = asyncio.Event()
        self._reading = asyncio.Event()
        self._reading.set()
        self._drained = asyncio.Event()
        self._closing = False
        self._give_up: asyncio.TimerHandle | None = None
        self._abandoned = False
        self._runner = asyncio.current_task()  # the ASGI call serving this connection
        self._session: Session | None = None  # told when writing resumes

    @property
    def buffered(self) -> int:
        return self._buffered

    def send(self, message: Message) -> None:
        if isinstance(message, str):
            self._push({"type": "websocket.send", "text": message}, len(message))
        else:
            self._push({"type": "websocket.send", "bytes": bytes(message)}, len(message))

    def send_text(self, payload: bytes) -> None:
        self._push({"type": "websocket.send", "text": payload.decode()}, len(payload))

    def send_frame(self, frame: bytes) -> None:
        self._push(_frame_message(frame), len(frame))

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        reason = close_reason(code, reason)
        if self._closing or self.ended.is_set():
            return
        self._closing = True
        self._push({"type": "websocket.close", "code": code, "reason": reason}, 0, force=True)
        loop = asyncio.get_running_loop()
        self._give_up = loop.call_later(self._close_timeout, self._abandon)

    def _abandon(self) -> None:
        """Our close went unanswered for ``Timeouts.close`` (a client that does not
        read never sees it): stop waiting, so the hub forgets the peer now."""
        if not self.ended.is_set() and self._runner is not None:
            self._abandoned = True
            self._runner.cancel()

    @property
    def closing(self) -> bool:
        return self._closing or self.ended.is_set()

    async def drain(self) -> None:
        while self.writing_paused and not self.ended.is_set():
            self._drained.clear()
            await self._drained.wait()

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    # -- the connection's life -------------------------------------------------

    async def run(self, receive: Receive, session: Session) -> None:
        """Feed ``session`` until the client disconnects (or our close times out)."""
        self._session = session
        writer = asyncio.get_running_loop().create_task(self._write())
        code, reason = CloseCode.ABNORMAL, ""
        try:
            while True:
                await self._reading.wait()
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    code = message.get("code", 1005)  # 1005: no status code (RFC 6455 §7.4.1)
                    reason = message.get("reason") or ""
                    break
                if message["type"] == "websocket.receive" and not self._closing:
                    self._received(message, session)
        except asyncio.CancelledError:
            if not self._abandoned or self._runner is None:
                raise
            self._runner.uncancel()  # our own cancellation: the connection just ends
        finally:
            if self._give_up is not None:
                self._give_up.cancel()
            self.ended.set()
            self._wake.set()
            self._drained.set()
            writer.cancel()
            session.connection_lost(code, reason)

    def _received(self, message: MutableMapping[str, Any], session: Session) -> None:
        data: Message | None = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        limit = self._limits.max_message_size
        if limit is not None and len(data) > limit:
            self.close(CloseCode.MESSAGE_TOO_BIG, f"message larger than {limit} bytes")
            return
        session.message_received(data)

    def _push(self, message: MutableMapping[str, Any], size: int, *, force: bool = False) -> None:
        if self.ended.is_set() or (self._closing and not force):
            return
        self._queue.append((message, size))
        self._buffered += size
        if self._buffered > self._limits.write_buffer_high:
            self.writing_paused = True
        self._wake.set()

    async def _write(self) -> None:
        while not self.ended.is_set():
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            message, size = self._queue.popleft()
            try:
                await self._send(message)
            except Exception as exc:  # the client is gone; the disconnect follows
                logger.debug("ASGI send failed: %r", exc)
                self._queue.clear()
                return
            self._buffered -= size
            if self.writing_paused and self._buffered <= self._limits.write_buffer_low:
                self.writing_paused = False
                self._drained.set()
                if self._session is not None:
                    self._session.writing_resumed()


_HTTP_SCHEME = {"ws": "http", "wss": "https"}

_last_frame: tuple[bytes, MutableMapping[str, Any]] = (b"", {})


def _frame_message(frame: bytes) -> MutableMapping[str, Any]:
    """The ASGI message carrying an unmasked, uncompressed frame's payload.

    A broadcast hands every receiver the same frame object: the payload is
    cut out (and a text one decoded) once, for all of them.
    """
    global _last_frame
    if _last_frame[0] is frame:
        return _last_frame[1]
    length = frame[1] & 0x7F
    payload = frame[2 if length < 126 else 4 if length == 126 else 10 :]
    if frame[0] & 0x0F == 0x1:
        message: MutableMapping[str, Any] = {"type": "websocket.send", "text": payload.decode()}
    else:
        message = {"type": "websocket.send", "bytes": payload}
    _last_frame = (frame, message)
    return message


async def _client_gone(receive: Receive, request: Request) -> None:
    """Tell ``request`` when the ASGI server says its client left (``http.disconnect``)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    request.client_gone()


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it is larger than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_response(
    send: Send, response: Response, *, head: bool = False, prefix: str = "http"
) -> None:
    await send({"type": f"{prefix}.response.start", **_head(response)})
    body = b"" if head or response.status in (204, 304) else response.body
    await send({"type": f"{prefix}.response.body", "body": body})


def _head(response: Response) -> dict[str, Any]:
    """The status and headers of ``response`` as ASGI wants them (framing added)."""
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers
    ]
    if response.status not in (204, 304):
        headers.append((b"content-type", response.content_type.encode("latin-1")))
        if response.stream is None:  # else the server frames it (chunked)
            headers.append((b"content-length", str(len(response.body)).encode()))
    return {"status": response.status, "headers": headers}


async def _stream_response(
    receive: Receive, send: Send, request: Request, response: Response
) -> None:
    """Send a streamed response chunk by chunk until it ends or the client leaves.

    The stream is cancelled (its ``finally`` runs) when ``http.disconnect``
    arrives: a server-sent stream usually never ends by itself.
    """
    assert response.stream is not None
    stream = response.stream

    async def pump() -> None:
        await send({"type": "http.response.start", **_head(response)})
        async for chunk in stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def left() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    loop = asyncio.get_running_loop()
    tasks = {loop.create_task(pump()), loop.create_task(left())}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "the stream answering %s %s failed",
                request.method,
                request.path,
                exc_info=task.exception(),
            )


async def _refuse(scope: Scope, send: Send, response: Response) -> None:
    """Refuse a handshake with an HTTP response where the server can send one, else 403."""
    if "websocket.http.response" in scope.get("extensions", {}):
        await _send_response(send, response, prefix="websocket.http")
    else:
        await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
