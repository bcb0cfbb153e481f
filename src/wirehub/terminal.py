"""``wirehub connect``: an interactive terminal WebSocket client, like wscat."""

from __future__ import annotations

import asyncio
import ssl
import sys
import threading

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

__all__ = ["run_terminal"]


def _describe(message: str | bytes) -> str:
    if isinstance(message, str):
        return message
    preview = message[:32].hex(" ")
    return f"(binary, {len(message)} bytes) {preview}{' …' if len(message) > 32 else ''}"


async def _print_incoming(ws: ClientConnection) -> None:
    async for message in ws:
        print(f"< {_describe(message)}", flush=True)


def _read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str]) -> None:
    """Feed stdin lines to ``lines`` ("" at end of input); runs in a daemon thread.

    Not ``run_in_executor``: asyncio.run() waits for executor threads on exit,
    so a readline() blocked on a silent terminal would keep the program alive
    after the server closed the connection. A daemon thread is just dropped.
    """
    while True:
        line = sys.stdin.readline()
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
        if not line:  # end of input: close politely
            return
        await ws.send(line.rstrip("\n"))


async def run_terminal(
    url: str, headers: list[tuple[str, str]], subprotocols: list[str], *, insecure: bool
) -> int:
    """Connect, relay stdin/stdout until either side ends; return an exit status."""
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
        print(f"error: could not connect to {url}: {reason}", file=sys.stderr)
        return 2
    print(
        f"connected to {url}"
        + (f" (subprotocol {ws.subprotocol})" if ws.subprotocol else "")
        + "; type a line to send it, Ctrl-D to close",
        file=sys.stderr,
        flush=True,
    )
    reader = asyncio.create_task(_print_incoming(ws))
    writer = asyncio.create_task(_send_typed(ws))
    done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    if writer in done:
        await ws.close()
        await reader
    writer.cancel()
    code = ws.close_code if ws.close_code is not None else 1006
    print(f"disconnected: {code} {ws.close_reason or ''}".rstrip(), file=sys.stderr)
    return 0 if code in (1000, 1001) else 1
