"""``wirehub connect``: the terminal client, run as a real subprocess against a real server."""

from __future__ import annotations

import asyncio
import socket

from tests.conftest import UNIT, echo_hub, serve
from tests.test_cli import START, wirehub_process
from wirehub import WebSocket


async def read_line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    return (await asyncio.wait_for(process.stdout.readline(), START)).decode().rstrip("\n")


async def test_lines_typed_are_sent_and_replies_printed() -> None:
    """Each stdin line is sent as a message and each reply printed on stdout; EOF closes 1000."""
    async with serve(echo_hub()) as s, wirehub_process("connect", s.ws("/echo")) as process:
        assert process.stdin is not None
        process.stdin.write(b"hello\nsecond line\n")
        assert await read_line(process) == "< hello"
        assert await read_line(process) == "< second line"
        process.stdin.close()
        _, stderr = await asyncio.wait_for(process.communicate(), 5 * UNIT)
    assert process.returncode == 0
    assert b"connected to" in stderr
    assert b"disconnected: 1000" in stderr


async def test_binary_messages_are_described() -> None:
    """A binary message is printed as its size and a hex preview."""
    hub = echo_hub()

    @hub.websocket("/bin")
    async def binary(ws: WebSocket) -> None:
        await ws.send(b"\x00\x01\xff")
        await ws.recv()

    async with serve(hub) as s, wirehub_process("connect", s.ws("/bin")) as process:
        assert await read_line(process) == "< (binary, 3 bytes) 00 01 ff"


async def test_exits_when_the_server_closes() -> None:
    """When the server closes, the client exits at once (without waiting for stdin), 1 on error."""
    hub = echo_hub()

    @hub.websocket("/boom")
    async def boom(ws: WebSocket) -> None:
        raise RuntimeError("boom")

    async with serve(hub) as s, wirehub_process("connect", s.ws("/boom")) as process:
        # stdin stays open: the user has typed nothing.
        assert await asyncio.wait_for(process.wait(), START) == 1
        assert process.stderr is not None
        stderr = await process.stderr.read()
    assert b"disconnected: 1011 internal error" in stderr


async def test_refused_connection_is_a_clear_error() -> None:
    """Connecting to a port nobody listens on prints a clear error and exits non-zero."""
    with socket.socket() as sock:  # find a port that is free, then leave it closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with wirehub_process("connect", f"ws://127.0.0.1:{port}/echo") as process:
        _, stderr = await asyncio.wait_for(process.communicate(), START)
    assert process.returncode == 2
    assert b"connection refused" in stderr
    assert b"Traceback" not in stderr


async def test_404_path_is_a_clear_error() -> None:
    """Connecting to a path with no endpoint prints the HTTP status and exits non-zero."""
    async with serve(echo_hub()) as s, wirehub_process("connect", s.ws("/nope")) as process:
        _, stderr = await asyncio.wait_for(process.communicate(), START)
    assert process.returncode == 2
    assert b"refused the WebSocket handshake: HTTP 404" in stderr
    assert b"Traceback" not in stderr
