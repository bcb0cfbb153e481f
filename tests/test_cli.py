"""The ``wirehub`` command: ``serve`` in a real subprocess, and loading apps."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner

from tests.conftest import UNIT, connect
from tests.services import redis_command, running_redis
from wirehub import ConfigError, Hub, Limits
from wirehub.cli import load_app, main

ROOT = Path(__file__).resolve().parent.parent
START = 10 * UNIT  # a fresh interpreter importing wirehub is the slowest step in the suite


@contextlib.asynccontextmanager
async def wirehub_process(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``python -m wirehub ARGS``; kill it at the end if it is still running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wirehub",
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.communicate()


async def served_url(process: asyncio.subprocess.Process) -> str:
    """The base URL ``wirehub serve`` announces on its first stdout line."""
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), START)).decode()
    match = re.search(r" on (http://127\.0\.0\.1:\d+) ", line)
    assert match, f"no URL in {line!r}"
    return match.group(1)


@pytest.mark.parametrize(("option", "code"), [((), 1001), (("--shutdown-code", "1012"), 1012)])
async def test_serve_then_sigterm_closes_clients_and_exits_0(
    option: tuple[str, ...], code: int
) -> None:
    """``wirehub serve`` prints its URL, echoes, and on SIGTERM closes clients and exits 0."""
    async with wirehub_process("serve", "examples/echo.py:hub", "--port", "0", *option) as process:
        url = await served_url(process)
        async with connect(url.replace("http://", "ws://") + "/echo") as ws:
            await ws.send("over the wire")
            assert await asyncio.wait_for(ws.recv(), UNIT) == "over the wire"
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(ws.wait_closed(), 5 * UNIT)
            assert ws.close_code == code
        assert await asyncio.wait_for(process.wait(), 5 * UNIT) == 0
        assert process.stderr is not None
        stderr = await process.stderr.read()
    assert b"Traceback" not in stderr


async def test_serve_bad_app_is_a_usage_error() -> None:
    """``wirehub serve`` with an app that does not exist exits 2 with a clear message."""
    async with wirehub_process("serve", "examples/nope.py:hub", "--port", "0") as process:
        _, stderr = await asyncio.wait_for(process.communicate(), START)
    assert process.returncode == 2
    assert b"no such file: examples/nope.py" in stderr
    assert b"Traceback" not in stderr


def test_load_app_from_file_and_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_app`` takes file.py:attr or module:attr, defaulting attr to ``hub``."""
    (tmp_path / "myapp.py").write_text(
        "from wirehub import Hub\nhub = Hub()\nother = Hub()\ndef factory():\n    return Hub()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "myapp", raising=False)
    assert isinstance(load_app(str(tmp_path / "myapp.py")), Hub)
    assert isinstance(load_app("myapp.py:other"), Hub)
    assert isinstance(load_app("myapp:factory"), Hub)
    monkeypatch.delitem(sys.modules, "myapp", raising=False)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing.py", "no such file"),
        ("myapp.py:nothing", "has no attribute 'nothing'"),
        ("myapp.py:number", "is a int, not a wirehub.Hub"),
        ("myapp.py:make", "needs arguments: give a Hub, or a function taking none"),
        ("myapp.py:asgi", "is an ASGI application .* serve it with uvicorn"),
    ],
)
def test_load_app_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, message: str
) -> None:
    """``load_app`` explains what is wrong with a target that is not a Hub."""
    (tmp_path / "myapp.py").write_text(
        "number = 42\ndef make(settings):\n    return 1\n"
        "async def asgi(scope, receive, send):\n    pass\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "myapp", raising=False)
    with pytest.raises(ConfigError, match=message):
        load_app(target)
    monkeypatch.delitem(sys.modules, "myapp", raising=False)


def test_help_lists_commands() -> None:
    """``wirehub --help`` lists the serve and connect commands."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "serve" in result.output
    assert "connect" in result.output


@pytest.fixture
def app_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A minimal app file; ``load_app``'s additions to sys.path and sys.modules are undone."""
    (tmp_path / "cliapp.py").write_text("from wirehub import Hub\nhub = Hub()\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    return str(tmp_path / "cliapp.py")


def one_line_error(result: Any) -> str:
    """The error ``wirehub`` printed, checked to be one line without a traceback."""
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_serve_port_out_of_range_is_refused(app_path: str) -> None:
    """``--port 99999`` is refused, not served on some other port."""
    result = CliRunner().invoke(main, ["serve", app_path, "--port", "99999"])
    assert "99999 is not in the range 0<=x<=65535" in one_line_error(result)


def test_serve_tls_errors_are_one_line(app_path: str, tmp_path: Path) -> None:
    """A key that is not the certificate's, or a file that is no certificate, is named."""
    ca = trustme.CA()
    one, other = ca.issue_cert("localhost"), ca.issue_cert("localhost")
    one.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    other.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    runner = CliRunner()
    certfile, keyfile = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    result = runner.invoke(main, ["serve", app_path, "--certfile", certfile, "--keyfile", keyfile])
    assert "the key in" in one_line_error(result) and "is not the key of" in result.output
    result = runner.invoke(main, ["serve", app_path, "--certfile", app_path])
    assert "is not a certificate in PEM format" in one_line_error(result)


@pytest.mark.parametrize("options", [["--workers", "1"], ["--workers", "2"], ["--redis-cluster"]])
def test_serve_with_unreachable_redis_fails_at_start(app_path: str, options: list[str]) -> None:
    """``--redis`` to a port where no Redis answers stops at start, password hidden."""
    with socket.socket() as sock:  # a port that is free, then left closed
        sock.bind(("127.0.0.1", 0))
        url = f"redis://:s3cret@127.0.0.1:{sock.getsockname()[1]}/0"
    result = CliRunner().invoke(main, ["serve", app_path, *options, "--redis", url])
    error = one_line_error(result)
    assert "cannot reach Redis at redis://:***@127.0.0.1" in error
    assert "s3cret" not in result.output


async def test_serve_reload_restarts_on_change(tmp_path: Path) -> None:
    """``--reload``: editing the app restarts the server, and clients are told 1012."""
    app = tmp_path / "reloaded.py"
    app.write_text(RELOADED.format(path="/one"))
    async with wirehub_process("serve", f"{app}:hub", "--port", "0", "--reload") as process:
        url = (await served_url(process)).replace("http://", "ws://")
        async with connect(url + "/one") as ws:
            app.write_text(RELOADED.format(path="/two"))
            await asyncio.wait_for(ws.wait_closed(), START)
            assert ws.close_code == 1012
        url = (await served_url(process)).replace("http://", "ws://")
        async with connect(url + "/two") as ws:
            assert await asyncio.wait_for(ws.recv(), UNIT) == "/two"
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), START) == 0


RELOADED = """\
from wirehub import Hub

hub = Hub()


@hub.websocket("{path}")
async def endpoint(ws):
    await ws.send("{path}")
    await ws.wait_closed()
"""


def test_serve_history_options_reach_the_broker(
    app_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--history-size`` and ``--history-ttl`` configure the broker that serves; 0 s is refused."""
    import wirehub.server.serve

    served: list[Any] = []
    monkeypatch.setattr(wirehub.server.serve, "run", lambda hub, *a, **k: served.append(hub))
    options = ["--history-size", "7", "--history-ttl", "90"]
    result = CliRunner().invoke(main, ["serve", app_path, *options])
    assert result.exit_code == 0, result.output
    [hub] = served
    assert (hub.broker.history_size, hub.broker.history_ttl) == (7, 90.0)
    result = CliRunner().invoke(main, ["serve", app_path, "--history-ttl", "0"])
    assert "--history-ttl" in one_line_error(result)


def test_serve_refuses_a_message_size_below_one(app_path: str) -> None:
    """``--max-message-size 0`` (or ``Limits(max_message_size=-5)``) is refused, not served.

    Such a server would answer every message with ``limit_exceeded``.
    """
    result = CliRunner().invoke(main, ["serve", app_path, "--max-message-size", "0"])
    assert "--max-message-size" in one_line_error(result)
    with pytest.raises(ValueError, match="max_message_size is at least 1"):
        Limits(max_message_size=-5)
    assert Limits(max_message_size=None, write_buffer_low=0).max_message_size is None


def test_serve_with_a_redis_that_wants_a_password_says_so(app_path: str) -> None:
    """A Redis with ``requirepass`` reached without one: the error says how to give it."""
    with running_redis() as server:
        redis_command(server.port, "CONFIG", "SET", "requirepass", "s3cret")
        result = CliRunner().invoke(main, ["serve", app_path, "--redis", server.url])
    assert "this Redis wants a password: redis://:PASSWORD@host:port" in one_line_error(result)
