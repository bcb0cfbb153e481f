"""Opening a connection (the WebSocket handshake, then ``welcome``), and reopening it.

A connection counts as open only once ``welcome`` arrived (docs/PROTOCOL.md,
"Connection lifecycle"): before that, the server's connect handler may still
refuse it with a close code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import ssl as _ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed as _WsClosed
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from wirehub.client.reconnect import Reconnect
from wirehub.codes import CloseCode, retry_after, should_reconnect
from wirehub.exceptions import ConnectionClosed, HandshakeError
from wirehub.protocol import messages as wire

__all__ = [
    "IncompatibleServer",
    "TokenSource",
    "Welcome",
    "closed_from",
    "fetch_token",
    "open_connection",
    "reopen",
]

logger = logging.getLogger("wirehub.client")

TokenSource = Callable[[], str | Awaitable[str]]
"""``get_token``: returns a token (or an awaitable of one); asked before every connection
attempt and whenever the server asks for a fresh one."""


async def fetch_token(get_token: TokenSource) -> str:
    """Call ``get_token`` (awaiting it if needed) and check it returned a string."""
    token = get_token()
    if not isinstance(token, str):
        token = await token
    if not isinstance(token, str) or not token:
        raise TypeError(f"get_token returned {type(token).__name__}, not a non-empty str")
    return token


_NO_TOKEN = "this client sent no token: if the server requires one, pass token= or get_token="

# A server's protocol messages kept before its welcome, at most (a wirehub
# server sends none; more than this is not a wirehub server).
_MAX_EARLY = 1000

# HTTP statuses that another attempt with the same request cannot fix.
_FINAL_STATUS = frozenset({400, 401, 403, 404, 405, 426})


@dataclasses.dataclass(frozen=True, slots=True)
class Welcome:
    """The server's ``welcome``: our peer id, its ping interval and its limits."""

    version: int
    peer: str
    ping_interval: float | None
    limits: dict[str, int | None]
    rooms: dict[str, wire.Position] = dataclasses.field(default_factory=dict)
    """Rooms the server joined us to before welcoming us, with their positions."""
    closed: ConnectionClosed | None = None
    """How the server closed our previous connection, when we may not have seen its close
    frame (a 4008 sent while we were not reading): PROTOCOL.md §2."""

    @property
    def max_message_size(self) -> int | None:
        """The largest message the server accepts from us (None: no limit)."""
        return self.limits.get("max_message_size")


class IncompatibleServer(HandshakeError):
    """The endpoint is not a wirehub event endpoint of a protocol version we speak."""


async def open_connection(
    url: str,
    *,
    headers: Mapping[str, str],
    open_timeout: float | None,
    ping_interval: float | None,
    max_size: int | None,
    ssl: _ssl.SSLContext | None,
    proxy: str | None,
    get_token: TokenSource | None = None,
) -> tuple[ClientConnection, Welcome, list[str | bytes]]:
    """Open a WebSocket to ``url`` and wait for ``welcome``, all within ``open_timeout``.

    Returns the connection, the welcome, and the protocol messages a server
    sent before its welcome (it should not: PROTOCOL.md §2), to be handled
    after it. Raises ``HandshakeError`` (with ``status`` when the server
    answered with an HTTP error), ``IncompatibleServer``, or
    ``ConnectionClosed`` when the server closed the connection before
    welcoming it (with a note on 4001 when the client has no token).
    """
    if get_token is not None:  # a fresh token for every attempt
        try:
            token = await fetch_token(get_token)
        except Exception as exc:
            raise HandshakeError(f"{url}: could not get a token: {exc!r}") from exc
        headers = {**headers, "Authorization": f"Bearer {token}"}
    tokenless = not any(name.lower() == "authorization" for name in headers)
    options: dict[str, object] = {}
    if ssl is not None:
        options["ssl"] = ssl
    try:
        async with asyncio.timeout(open_timeout):
            ws = await ws_connect(
                url,
                additional_headers=dict(headers),
                open_timeout=None,
                ping_interval=ping_interval,
                ping_timeout=ping_interval,
                max_size=max_size,
                proxy=proxy,
                **options,  # type: ignore[arg-type]
            )
    except InvalidStatus as exc:
        status = exc.response.status_code
        hint = f": {_NO_TOKEN}" if status == 401 and tokenless else ""
        raise HandshakeError(f"{url}: HTTP {status}{hint}", status=status) from None
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        raise HandshakeError(f"cannot connect to {url}: {exc or type(exc).__name__}") from None
    try:
        async with asyncio.timeout(open_timeout):
            if tokenless:
                # A server that takes the token in a first ``auth`` message
                # (§13) refuses anything else at once with 4001, instead of
                # waiting its auth timeout; any other server ignores it.
                with contextlib.suppress(_WsClosed):  # then recv says why
                    await ws.send('{"type":"ping"}')
            return ws, *await _welcome(ws, url)
    except ConnectionClosed as exc:
        ws.transport.abort()
        if exc.code == CloseCode.UNAUTHORIZED and tokenless:
            exc.add_note(_NO_TOKEN)  # shown with the traceback; the reason stays the server's
        raise
    except TimeoutError:
        await ws.close(CloseCode.GOING_AWAY)
        raise HandshakeError(f"{url}: no welcome within {open_timeout}s") from None
    except BaseException:
        ws.transport.abort()
        raise


def closed_from(exc: _WsClosed) -> ConnectionClosed:
    """Our ``ConnectionClosed`` from the one ``websockets`` raises (1006: no close frame)."""
    if exc.rcvd is None:
        return ConnectionClosed(CloseCode.ABNORMAL, "connection lost")
    return ConnectionClosed(exc.rcvd.code, exc.rcvd.reason)


async def _welcome(ws: ClientConnection, url: str) -> tuple[Welcome, list[str | bytes]]:
    early: list[str | bytes] = []
    while True:
        try:
            raw = await ws.recv()
        except _WsClosed as exc:
            raise closed_from(exc) from None
        try:
            message, _ = wire.decode_server(raw)
        except wire.DecodeError:
            message = None
        if message is None or len(early) >= _MAX_EARLY:
            await ws.close(CloseCode.PROTOCOL_ERROR)
            raise IncompatibleServer(f"{url} is not a wirehub event endpoint (no welcome)")
        if type(message) is wire.Welcome:
            break
        early.append(raw)
    if early:
        logger.warning(
            "%s sent %d message(s) before its welcome; handling them after it", url, len(early)
        )
    if message.v != wire.PROTOCOL_VERSION:
        await ws.close(CloseCode.PROTOCOL_ERROR)
        raise IncompatibleServer(f"{url} speaks protocol v{message.v}, not v1")
    closed = None
    if isinstance(message.closed, dict) and isinstance(message.closed.get("code"), int):
        closed = ConnectionClosed(message.closed["code"], str(message.closed.get("reason", "")))
    welcome = Welcome(
        message.v, message.peer, message.ping_interval, message.limits, message.rooms, closed
    )
    return welcome, early


async def reopen(
    url: str, policy: Reconnect, options: dict[str, Any], lost: ConnectionClosed | None = None
) -> tuple[ConnectionClosed, tuple[ClientConnection, Welcome, list[str | bytes], int] | None]:
    """Reconnect to ``url`` with backoff until welcomed, refused for good, or out of attempts.

    Returns why the last attempt failed (when giving up) and, on success,
    what ``open_connection`` returns and the number of attempts it took.
    ``options`` are ``open_connection``'s keyword arguments. When the close
    that ended the connection (``lost``) asked for a delay (a server shutting
    down: ``retry_after`` in its reason, PROTOCOL.md §6), the first attempt
    waits that long, at most ``policy.max_delay``, and the backoff of the
    attempts after it starts from its first step.
    """
    why = ConnectionClosed(CloseCode.ABNORMAL, "connection lost")
    hint = retry_after(lost.reason) if lost is not None else None
    for attempt in itertools.count(1):
        if not policy.allows(attempt):
            logger.warning("gave up reconnecting to %s after %d attempts", url, attempt - 1)
            return why, None
        if attempt == 1 and hint is not None:
            await asyncio.sleep(min(hint, policy.max_delay))
        else:  # after a suggested delay, the backoff starts from its first step
            await asyncio.sleep(policy.delay(attempt - (hint is not None)))
        try:
            return why, (*await open_connection(url, **options), attempt)
        except ConnectionClosed as exc:  # refused by the server's connect handler
            why = exc
            if not should_reconnect(exc.code):
                logger.warning("reconnection to %s refused for good: %s", url, exc)
                return why, None
        except HandshakeError as exc:
            why = ConnectionClosed(CloseCode.ABNORMAL, str(exc))
            if isinstance(exc, IncompatibleServer) or exc.status in _FINAL_STATUS:
                logger.warning("reconnection to %s refused for good: %s", url, exc)
                return why, None
            logger.info("reconnection attempt %d to %s failed: %s", attempt, url, exc)
    raise AssertionError("unreachable")
