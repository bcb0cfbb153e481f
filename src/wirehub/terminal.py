"""``wirehub connect``: an interactive terminal WebSocket client, like wscat."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import threading
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

__all__ = ["IDLE", "run_terminal"]

IDLE = 1.0
"""Seconds without a message, after the end of input, before ``connect`` closes."""

PROBE_TIMEOUT = 2.0  # seconds for the TLS probe that explains a failed connection


def _describe(message: str | bytes) -> str:
    if isinstance(message, str):
        return message
    preview = message[:32].hex(" ")
    return f"(binary, {len(message)} bytes) {preview}{' …' if len(message) > 32 else ''}"


async def _print_incoming(ws: ClientConnection, activity: asyncio.Event) -> None:
    """Print each message received until the connection closes, however it closes."""
    with contextlib.suppress(websockets.ConnectionClosed):
        async for message in ws:
            print(f"< {_describe(message)}", flush=True)
            activity.set()


def _read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str]) -> None:
    """Feed stdin lines to ``lines`` ("" at end of input); runs in a daemon thread.

    Not ``run_in_executor``: asyncio.run() waits for executor threads on exit,
    so a readline() blocked on a silent terminal would keep the program alive
    after the server closed the connection. A daemon thread is just dropped.
    """
    while True:
        try:
            line = sys.stdin.readline()
        except UnicodeDecodeError:  # a strict locale; others pass the bytes as surrogates
            line = "\udcff\n"  # refused by _send_typed like those
        try:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        except RuntimeError:  # the event loop is closed: we are exiting
            return
        if not line:
            return


async def _send_typed(ws: ClientConnection) -> None:
    lines: asyncio.Queue[str] = asyncio.Queue()
    reader = threading.Thread(
        target=_read_stdin, args=(asyncio.get_running_loop(), lines), daemon=True
    )
    reader.start()
    while True:
        line = await lines.get()
        if not line:  # end of input
            return
        text = line.rstrip("\n")
        try:
            text.encode()
        except UnicodeEncodeError:  # a text message is UTF-8 (RFC 6455 §5.6)
            print("not sent: that line is not UTF-8 text", file=sys.stderr, flush=True)
            continue
        try:
            await ws.send(text)
        except websockets.ConnectionClosed:  # the reader reports how it closed
            return


async def _linger(reader: asyncio.Task[None], activity: asyncio.Event, wait: float | None) -> None:
    """After the end of input, let replies arrive: for ``wait`` seconds, or until idle.

    Without this, ``echo hello | wirehub connect URL`` would close before
    the reply to its last line arrived, and print nothing.
    """
    if wait is not None:
        await asyncio.wait({reader}, timeout=wait)
        return
    while not reader.done():
        activity.clear()
        active = asyncio.ensure_future(activity.wait())
        await asyncio.wait({reader, active}, timeout=IDLE, return_when=asyncio.FIRST_COMPLETED)
        active.cancel()
        if not activity.is_set():
            return


async def _scheme_hint(url: str) -> str:
    """Say so when the port speaks TLS and the URL is ws://, or the reverse."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    if parts.hostname is None:
        return ""
    tls = await _speaks_tls(parts.hostname, parts.port or (443 if secure else 80))
    if tls and not secure:
        return f" (this port speaks TLS: use wss://{url.partition('://')[2]})"
    if tls is False and secure:
        return f" (this port does not speak TLS: use ws://{url.partition('://')[2]})"
    return ""


async def _speaks_tls(host: str, port: int) -> bool | None:
    """Whether a TLS handshake with ``host:port`` succeeds (None: no answer either way)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            _, writer = await asyncio.open_connection(host, port, ssl=context)
    except ssl.SSLError:
        return False
    except (OSError, TimeoutError):
        return None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def run_terminal(
    url: str,
    headers: list[tuple[str, str]],
    subprotocols: list[str],
    *,
    insecure: bool,
    wait: float | None = None,
) -> int:
    """Connect, relay stdin/stdout until either side ends; return an exit status.

    At the end of input, replies are still printed for ``wait`` seconds (or
    until none came for ``IDLE`` seconds), then the connection is closed
    with 1000. Status: 0 after a 1000 or 1001 close, 1 after any other (or
    a dropped connection), 2 when the connection could not be opened.
    """
    context: ssl.SSLContext | None = None
    if url.startswith("wss://"):
        context = ssl.create_default_context()
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    try:
        ws = await websockets.connect(
            url,
            additional_headers=headers,
            subprotocols=[Subprotocol(p) for p in subprotocols] or None,
            ssl=context,
            open_timeout=10,
            max_size=None,
        )
    except websockets.InvalidStatus as exc:
        status = exc.response.status_code
        body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
        print(
            f"error: the server refused the WebSocket handshake: HTTP {status}"
            f"{': ' + body if body else ''}",
            file=sys.stderr,
        )
        return 2
    except ssl.SSLCertVerificationError as exc:
        print(
            f"error: TLS certificate not trusted ({exc.verify_message}); "
            "use --insecure for a self-signed certificate",
            file=sys.stderr,
        )
        return 2
    except ConnectionRefusedError:
        print(
            f"error: could not connect to {url}: connection refused "
            "(is the server running on that host and port?)",
            file=sys.stderr,
        )
        return 2
    except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, websockets.InvalidURI):
            scheme, sep, rest = url.partition("://")
            ws_scheme = {"http": "ws", "https": "wss"}.get(scheme.lower()) if sep else None
            hint = f" (use {ws_scheme}://{rest})" if ws_scheme else ""
        else:
            hint = await _scheme_hint(url)
        print(f"error: could not connect to {url}: {reason}{hint}", file=sys.stderr)
        return 2
    print(
        f"connected to {url}"
        + (f" (subprotocol {ws.subprotocol})" if ws.subprotocol else "")
        + "; type a line to send it, Ctrl-D to close",
        file=sys.stderr,
        flush=True,
    )
    activity = asyncio.Event()
    reader = asyncio.create_task(_print_incoming(ws, activity))
    writer = asyncio.create_task(_send_typed(ws))
    await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    if not reader.done():  # end of input, the connection still open
        await _linger(reader, activity, wait)
        await ws.close()
        await reader
    writer.cancel()
    code = ws.close_code if ws.close_code is not None else 1006
    print(f"disconnected: {code} {ws.close_reason or ''}".rstrip(), file=sys.stderr)
    return 0 if code in (1000, 1001) else 1
