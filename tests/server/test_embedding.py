"""Embedding: ``async with wirehub.serve(hub)`` in your own loop, and ``hub.run()``."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import pytest

import wirehub
from tests.conftest import UNIT, connect, echo_hub, http
from tests.test_cli import START


async def test_serve_in_own_loop_installs_no_signal_handler() -> None:
    """``wirehub.serve`` serves inside the block, leaves SIGINT/SIGTERM alone, and stops after."""
    hub = echo_hub()
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    async with wirehub.serve(hub, "127.0.0.1", 0) as server:
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
        ws = await connect(server.url.replace("http", "ws") + "/echo")
        await ws.send("embedded")
        assert await asyncio.wait_for(ws.recv(), UNIT) == "embedded"
        port = int(server.url.rsplit(":", 1)[1])
    await asyncio.wait_for(ws.wait_closed(), UNIT)
    assert ws.close_code == 1001
    with pytest.raises(OSError):
        await http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")


async def test_an_ipv6_url_is_bracketed() -> None:
    """On ``::1`` the server's URL is ``http://[::1]:PORT``, one a client can open."""
    async with wirehub.serve(echo_hub(), "::1", 0) as server:
        assert re.fullmatch(r"http://\[::1\]:\d+", server.url), server.url
        async with connect(server.url.replace("http", "ws", 1) + "/echo") as ws:
            await ws.send("six")
            assert await asyncio.wait_for(ws.recv(), UNIT) == "six"


async def test_serve_forever_ends_on_a_handled_signal() -> None:
    """With ``handle_signals=True`` SIGTERM ends ``serve_forever``; the handlers go afterwards."""
    before = signal.getsignal(signal.SIGTERM)
    async with wirehub.serve(echo_hub(), port=0, handle_signals=True) as server:
        assert signal.getsignal(signal.SIGTERM) != before
        asyncio.get_running_loop().call_soon(signal.raise_signal, signal.SIGTERM)
        await asyncio.wait_for(server.serve_forever(), UNIT)
    assert signal.getsignal(signal.SIGTERM) == before


async def test_a_port_in_use_raises_and_stops_the_hub() -> None:
    """A busy address raises OSError from ``async with``; the hub's startup is undone."""
    stopped = asyncio.Event()
    async with wirehub.serve(echo_hub(), port=0) as first:
        port = int(first.url.rsplit(":", 1)[1])
        hub = echo_hub()
        hub.on_shutdown(stopped.set)
        with pytest.raises(OSError):
            async with wirehub.serve(hub, port=port):
                pass
    assert stopped.is_set()


async def test_hub_run_prints_where_it_listens_and_stops_on_sigterm() -> None:
    """``hub.run()`` prints its URL, serves, and exits 0 on SIGTERM."""
    code = "import wirehub\nwirehub.Hub().run(port=0)\n"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), START)).decode()
        match = re.match(
            r"wirehub listening on http://127\.0\.0\.1:(\d+) \(WebSocket routes: /ws\)", line
        )
        assert match, line
        response = await http(int(match.group(1)), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert response.status == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), START) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_hub_run_on_a_busy_port_exits_with_one_line() -> None:
    """``python app.py`` (``hub.run()``) on a port in use exits 1 with one line, no traceback."""
    async with wirehub.serve(echo_hub(), "127.0.0.1", 0) as busy:
        port = int(busy.url.rsplit(":", 1)[1])
        code = f"import wirehub\nwirehub.Hub().run(port={port})\n"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(process.communicate(), START)
    assert process.returncode == 1
    assert stderr.decode().strip().startswith(f"wirehub: cannot listen on 127.0.0.1:{port}:")
    assert b"Traceback" not in stderr
