"""``wirehub connect``: the terminal client, run as a real subprocess against a real server."""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest

from tests.conftest import UNIT, echo_hub, serve
from tests.test_cli import START, wirehub_process
from wirehub import WebSocket
from wirehub.terminal import IDLE as TERMINAL_IDLE
from wirehub.terminal import run_terminal


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


async def test_a_line_that_is_not_utf8_is_refused_and_the_next_sent() -> None:
    """A line of Latin-1 bytes is named on stderr, not sent; the connection goes on."""
    async with serve(echo_hub()) as s, wirehub_process("connect", s.ws("/echo")) as process:
        assert process.stdin is not None
        process.stdin.write(b"caf\xe9\nafter\n")
        assert await read_line(process) == "< after"
        process.stdin.close()
        _, stderr = await asyncio.wait_for(process.communicate(), 5 * UNIT)
    assert process.returncode == 0
    assert b"not sent: that line is not UTF-8 text" in stderr
    assert b"Traceback" not in stderr


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


async def test_an_http_url_is_pointed_to_ws(capsys: pytest.CaptureFixture[str]) -> None:
    """``wirehub connect http://…`` exits 2 and names the ws:// URL to use instead."""
    assert await run_terminal("https://example.invalid/ws", [], [], insecure=False) == 2
    assert "(use wss://example.invalid/ws)" in capsys.readouterr().err


async def test_404_path_is_a_clear_error() -> None:
    """Connecting to a path with no endpoint prints the HTTP status and exits non-zero."""
    async with serve(echo_hub()) as s, wirehub_process("connect", s.ws("/nope")) as process:
        _, stderr = await asyncio.wait_for(process.communicate(), START)
    assert process.returncode == 2
    assert b"refused the WebSocket handshake: HTTP 404" in stderr
    assert b"Traceback" not in stderr


async def test_end_of_input_waits_for_the_reply() -> None:
    """``echo hello | wirehub connect``: the reply that comes after the end of input is printed."""
    hub = echo_hub()

    @hub.websocket("/slow")
    async def slow(ws: WebSocket) -> None:
        async for message in ws:
            await asyncio.sleep(TERMINAL_IDLE / 4)  # the pipe has long been closed
            await ws.send(message)

    async with serve(hub) as s, wirehub_process("connect", s.ws("/slow")) as process:
        stdout, stderr = await asyncio.wait_for(process.communicate(b"hello\n"), START)
    assert stdout == b"< hello\n"
    assert b"disconnected: 1000" in stderr
    assert process.returncode == 0


async def test_wait_keeps_printing_for_that_long() -> None:
    """With ``--wait S`` replies slower than the idle time are still printed."""
    hub = echo_hub()

    @hub.websocket("/late")
    async def late(ws: WebSocket) -> None:
        await ws.recv()
        await asyncio.sleep(TERMINAL_IDLE * 1.5)
        await ws.send("late")

    wait = str(TERMINAL_IDLE * 1.5 + 5 * UNIT)
    async with (
        serve(hub) as s,
        wirehub_process("connect", "--wait", wait, s.ws("/late")) as process,
    ):
        stdout, _ = await asyncio.wait_for(process.communicate(b"go\n"), START + float(wait))
    assert stdout == b"< late\n"


@pytest.mark.parametrize("code", [1008, 1012])
async def test_abnormal_close_exits_1_without_a_traceback(code: int) -> None:
    """A close with 1008 or 1012 ends ``connect`` with status 1 and one line, nothing else."""
    hub = echo_hub()

    @hub.websocket("/refuse")
    async def refuse(ws: WebSocket) -> None:
        await ws.recv()
        await ws.close(code, "go away")

    async with serve(hub) as s, wirehub_process("connect", s.ws("/refuse")) as process:
        _, stderr = await asyncio.wait_for(process.communicate(b"hi\n"), START)
    assert process.returncode == 1
    assert stderr.decode().splitlines()[1:] == [f"disconnected: {code} go away"]


async def test_scheme_that_does_not_match_the_port_gets_a_hint(
    server_ssl: ssl.SSLContext,
) -> None:
    """``ws://`` to a TLS port and ``wss://`` to a plain one say which scheme the port speaks."""
    async with serve(echo_hub(), ssl=server_ssl) as tls, serve(echo_hub()) as plain:
        plain_url = f"ws://127.0.0.1:{tls.port}/echo"
        tls_url = f"wss://127.0.0.1:{plain.port}/echo"
        for url, hint in (
            (plain_url, "this port speaks TLS: use wss://"),
            (tls_url, "this port does not speak TLS: use ws://"),
        ):
            async with wirehub_process("connect", "-k", url) as process:
                _, stderr = await asyncio.wait_for(process.communicate(), START)
            assert process.returncode == 2
            assert hint in stderr.decode()
            assert b"Traceback" not in stderr
