"""``wirehub serve --workers N --redis URL``: forked workers sharing one port through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.conftest import UNIT
from tests.hub.wire import WireClient
from tests.test_cli import START, served_url
from wirehub.cli import main

ROOT = Path(__file__).resolve().parent.parent
APP = "tests/apps/nodes.py:hub"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.asynccontextmanager
async def workers(
    redis_url: str, prefix: str, *args: str, app: str = APP
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str, set[int]]]:
    """Run ``wirehub serve --workers 2``; yield it, its ws:// URL and the worker pids seen.

    At the end every worker pid the test saw must be gone (SIGKILL after a deadline).
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wirehub",
        "serve",
        app,
        "--workers",
        "2",
        "--redis",
        redis_url,
        "--redis-prefix",
        prefix,
        "--port",
        "0",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    seen: set[int] = set()
    try:
        url = await served_url(process)
        yield process, url.replace("http://", "ws://") + "/ws", seen
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), START)
            except TimeoutError:
                process.kill()
        _, stderr = await process.communicate()
        sys.stderr.write(stderr.decode(errors="replace"))  # shown when the test fails
        deadline = time.monotonic() + START  # workers die with their parent (PDEATHSIG)
        while any(alive(pid) for pid in seen) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for pid in seen:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"worker {pid} outlived its parent")


async def client_on_each_worker(url: str, seen: set[int]) -> dict[int, WireClient]:
    """Connect until two different workers answered; close the extra connections."""
    found: dict[int, WireClient] = {}
    extra: list[WireClient] = []
    async with asyncio.timeout(10 * UNIT):
        while len(found) < 2:
            client = await WireClient.open(url)
            pid = (await client.call("whoami"))["data"]["pid"]
            seen.add(pid)
            if pid in found:
                extra.append(client)
            else:
                found[pid] = client
    for client in extra:
        await client.close()
    return found


@pytest.mark.parametrize(("option", "code"), [((), 1001), (("--shutdown-code", "1012"), 1012)])
async def test_workers_chat_through_redis_and_stop_on_sigterm(
    redis_url: str, prefix: str, option: tuple[str, ...], code: int
) -> None:
    """Peers on two workers chat through Redis; SIGTERM closes them with the code and exits 0."""
    async with workers(redis_url, prefix, *option) as (process, url, seen):
        (pid_a, a), (pid_b, b) = (await client_on_each_worker(url, seen)).items()
        assert pid_a != pid_b and process.pid not in (pid_a, pid_b)
        assert (await b.call_excluded("say", "from b"))[0]["data"] is True
        message = await a.recv()
        assert (message["event"], message["data"], message["room"]) == ("said", "from b", "lobby")
        assert (await a.call_excluded("say", "from a"))[0]["data"] is True
        assert (await b.recv())["data"] == "from a"
        process.send_signal(signal.SIGTERM)
        for client in (a, b):
            with pytest.raises(ConnectionClosed):
                while True:
                    await client.recv(5 * UNIT)
            assert client.ws.close_code == code
        assert await asyncio.wait_for(process.wait(), START) == 0
        assert process.stderr is not None
        stderr = await process.stderr.read()
        assert b"Traceback" not in stderr


async def test_a_crashed_worker_is_replaced(redis_url: str, prefix: str) -> None:
    """A worker that dies is restarted by the parent; the new one serves and chats."""
    async with workers(redis_url, prefix) as (process, url, seen):
        clients = await client_on_each_worker(url, seen)
        (crashed, victim), (survivor, other) = clients.items()
        await victim.send({"type": "emit", "event": "crash", "id": 1})
        with pytest.raises(ConnectionClosed):
            await victim.recv(5 * UNIT)
        async with asyncio.timeout(10 * UNIT):
            while True:
                try:
                    newcomer = await WireClient.open(url)
                except (OSError, InvalidHandshake):
                    # A connection that reached the dying worker's listening socket
                    # is reset with it (SO_REUSEPORT); a real client reconnects.
                    continue
                pid = (await newcomer.call("whoami"))["data"]["pid"]
                seen.add(pid)
                if pid not in (crashed, survivor):
                    break
                await newcomer.close()
        assert not alive(crashed)
        await newcomer.call("say", "i am new")
        assert (await other.recv())["data"] == "i am new"
        assert process.returncode is None


def test_workers_without_redis_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--workers 2`` with the in-memory broker exits 2 and says why."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_app adds the app's folder
    monkeypatch.delitem(sys.modules, "nodes", raising=False)
    result = CliRunner().invoke(main, ["serve", APP, "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers 2 needs --redis URL" in result.output


def test_a_bad_redis_url_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--redis`` with a URL redis-py cannot parse exits 2 with the reason."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "nodes", raising=False)
    result = CliRunner().invoke(main, ["serve", APP, "--redis", "http://nope"])
    assert result.exit_code == 2
    assert "bad Redis URL" in result.output
