"""Run the code blocks of a Markdown file, in order, the way a reader would.

One ``Session`` per file: a temporary directory (the reader's working
directory, with ``.venv`` and ``examples`` linked in), one Python namespace
shared by the file's Python blocks (like a notebook), and the hub the last
of them defined, served in this process on a free port.

How each block runs, by its language (docs/README.md states the convention):

- ``python``: executed in the shared namespace (``__name__`` is not
  ``"__main__"``, so ``hub.run()`` under that guard does not run; top-level
  ``await`` runs in a fresh event loop). When ``print(...)`` lines end with
  a comment, the comments are what the block must print, in order. A block
  that binds a new ``Hub`` to ``hub`` is saved as ``app.py`` and served (on
  a free port; the previous one is stopped). ``127.0.0.1:8000`` and
  ``localhost:8000`` in later blocks mean that server.
- ``console``: each ``$ command`` runs in the directory with ``bash``; the
  lines after it are its expected output (each must appear; ``…`` matches
  anything; a JSON object matches any object with the same keys).
  A command must succeed unless a line it shows starts with ``error`` or
  ``Usage:``. ``wirehub serve`` runs in the background on a free port
  (``8000`` in later blocks means it) until a new server replaces it or the
  file ends; then it gets SIGINT, and its output is checked. For
  ``wirehub connect`` without a pipe, the lines that are neither
  ``< received`` nor status lines are what the reader types. No command
  may print a traceback. ``export NAME=value`` holds for the file's later
  commands.
- ``json``: parsed (one or more values); ``js``: checked with
  ``node --check``; ``html``: its inline scripts checked the same way.
- ``text`` and blocks without a language are not code (diagrams, trees).

A comment on the line before a fence changes that:
``<!-- doc-test: not run, <why> -->`` only parses the block (Python is
compiled), ``<!-- doc-test: before <shell command> -->`` runs a command
in the directory first (to create files the block expects), and
``<!-- doc-test: in a handler -->`` runs a Python block as the body of an
event handler ``async def (peer, data)`` of the hub being served, called by
a client (for lines that only make sense inside one). The Redis of the
examples, ``redis://10.0.0.5:6379``, is a ``redis-server`` started for the file.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import types
from pathlib import Path
from typing import Any

import wirehub
from tests.services import RedisServer, free_port, wait_listening
from wirehub import Hub
from wirehub.server.serve import Server

__all__ = ["ROOT", "Block", "Session", "blocks", "documents"]

UNIT = float(os.environ.get("WIREHUB_TEST_UNIT", "1.0"))  # conftest.UNIT
ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
NOT_CODE = {"", "text"}
MARKER = re.compile(r"<!--\s*doc-test:\s*(not run|before|in a handler)\b[,:]?\s*(.*?)\s*-->")
REDIS_EXAMPLE = "redis://10.0.0.5:6379"
PRINTED = re.compile(r"^\s*print\(.*\)\s+#\s(.+)$", re.M)  # print(x)  # what it prints
SERVE = re.compile(r"^(\S*/)?wirehub serve\b")
HOST_PORT = re.compile(r"\b(127\.0\.0\.1|localhost):(8000|8443)\b")


def documents() -> list[Path]:
    """README.md, examples/README.md and every Markdown file under docs/."""
    found = [ROOT / "README.md", ROOT / "examples" / "README.md"]
    return found + sorted((ROOT / "docs").rglob("*.md"))


@dataclasses.dataclass
class Block:
    path: Path
    line: int  # of the first line of code, 1-based
    lang: str
    source: str
    marker: str | None = None  # "not run" or "before"
    argument: str = ""

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of ``path`` (fences at the start of a line)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^(```+|~~~+)\s*([\w+-]*)", lines[i])
        if fence is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence.group(1)):
            end += 1
        block = Block(path, i + 2, fence.group(2).lower(), "\n".join(lines[i + 1 : end]) + "\n")
        before = i - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = MARKER.search(lines[before]) if before >= 0 else None
        if marker is not None:
            block.marker, block.argument = marker.group(1), marker.group(2)
        found.append(block)
        i = end + 1
    return found


@dataclasses.dataclass
class Background:
    """A server a console block started; it runs until another replaces it."""

    block: Block
    command: str
    expected: list[str]
    process: subprocess.Popen[str]


class Session:
    """What one Markdown file's blocks share; ``with Session(path) as s: s.run(block)``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.directory = Path(tempfile.mkdtemp(prefix="wirehub-doc-"))
        for name in (".venv", "examples"):
            target = ROOT / name if name != ".venv" else VENV_BIN.parent
            (self.directory / name).symlink_to(target)
        name = "doc_" + re.sub(r"\W", "_", str(path.relative_to(ROOT)))
        self.module = types.ModuleType(name)
        self.module.__file__ = str(self.directory / "app.py")
        self.namespace = self.module.__dict__
        self.ports = {"8000": free_port(), "8443": free_port()}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: Server | None = None  # the hub of the last Python block, served here
        self.served: Hub | None = None
        self.background: list[Background] = []  # or servers started by console blocks
        self.env = environment()
        self.redis: RedisServer | None = None

    def __enter__(self) -> Session:
        sys.modules[self.module.__name__] = self.module
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._stop_servers()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10 * UNIT)
            self.loop.close()
            if self.redis is not None:
                self.redis.stop()
            sys.modules.pop(self.module.__name__, None)
            shutil.rmtree(self.directory, ignore_errors=True)

    def localize(self, text: str) -> str:
        """The example ports (8000, 8443) and Redis replaced by this session's."""
        if REDIS_EXAMPLE in text:
            if self.redis is None:
                self.redis = RedisServer(self.directory)
                self.redis.start()
            text = text.replace(REDIS_EXAMPLE, f"redis://127.0.0.1:{self.redis.port}")
        return HOST_PORT.sub(lambda m: f"{m.group(1)}:{self.ports[m.group(2)]}", text)

    def run(self, block: Block) -> None:
        if block.marker == "before":
            status, output = self._shell(block.argument, timeout=10 * UNIT)
            assert status == 0, f"{block.where}: `{block.argument}` failed:\n{output}"
        runner = getattr(self, f"_run_{block.lang.replace('-', '_')}", None)
        if block.lang in NOT_CODE or (runner is None and block.marker == "not run"):
            return
        if block.marker == "in a handler":
            assert block.lang == "python", f"{block.where}: only Python runs in a handler"
            self._run_in_handler(block)
            return
        assert runner is not None, (
            f"{block.where}: no runner for ```{block.lang} blocks: mark it "
            "'<!-- doc-test: not run, <why> -->' or use a language the test knows"
        )
        runner(block, run=block.marker != "not run")

    # -- python ----------------------------------------------------------------

    def _run_python(self, block: Block, *, run: bool) -> None:
        source = "\n" * (block.line - 1) + self.localize(block.source)
        code = compile(
            source, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
        )
        if not run:
            return
        self.namespace["__name__"] = self.module.__name__
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            if code.co_flags & 0x80:  # CO_COROUTINE: top-level await
                asyncio.run(asyncio.wait_for(eval(code, self.namespace), 30 * UNIT))
            else:
                exec(code, self.namespace)
        expected = PRINTED.findall(block.source)
        if expected:
            lines = printed.getvalue().splitlines()
            assert len(lines) == len(expected) and all(
                matches(want.strip(), got.strip())
                for want, got in zip(expected, lines, strict=True)
            ), f"{block.where}: printed {lines}, the comments say {expected}"
        hub = self.namespace.get("hub")
        if isinstance(hub, Hub) and hub is not self.served:
            if imports_hub(block.source):  # a whole module, not a fragment
                (self.directory / "app.py").write_text(block.source)
            self._serve(hub)

    def _run_in_handler(self, block: Block) -> None:
        """Run the block as the body of an event handler, called once by a client."""
        hub = self.served
        assert hub is not None, f"{block.where}: no hub served above this block"
        body = textwrap.indent(self.localize(block.source), "    ")
        source = "\n" * (block.line - 2) + "async def handler(peer, data):\n" + body
        scope: dict[str, Any] = {}
        exec(compile(source, str(block.path), "exec", dont_inherit=True), self.namespace, scope)
        failures: list[BaseException] = []

        async def handler(peer: Any, data: Any) -> None:
            try:
                await scope["handler"](peer, data)
            except BaseException as exc:
                failures.append(exc)
                raise

        event = f"doc-test-{block.line}"
        hub.on(event)(handler)

        async def call() -> None:
            routes = hub.router.websocket.items()
            path = next(p for p, e in routes if getattr(e, "is_event_endpoint", False))
            url = f"ws://127.0.0.1:{self.ports['8000']}{path}"
            async with wirehub.connect(url) as client:
                await client.call(event, {"text": "hi"}, timeout=10 * UNIT)

        try:
            asyncio.run(call())
        except wirehub.CallError:
            if failures:
                raise failures[0] from None
            raise

    def _serve(self, hub: Hub) -> None:
        self._stop_servers()

        async def start() -> Server:
            server = Server(hub)
            await server.listen("127.0.0.1", self.ports["8000"])
            return server

        self.server = self._call(start())
        self.served = hub

    def _stop_servers(self) -> None:
        """Stop what serves port "8000" now (checking a console server's output)."""
        if self.server is not None:
            server, self.server = self.server, None
            self._call(server.shutdown(timeout=UNIT))
        background, self.background = self.background, []
        for running in background:
            output = stop(running.process)
            check_output(running.block, running.command, running.expected, (0, output), self)
        self.ports["8000"] = self.ports["8443"] = free_port()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10 * UNIT)

    # -- console ---------------------------------------------------------------

    def _run_console(self, block: Block, *, run: bool) -> None:
        commands = console_commands(block.source)
        assert commands, f"{block.where}: a console block without a '$ command'"
        if not run:
            return
        for command, expected in commands:
            if SERVE.match(command):
                self._stop_servers()
                command = command.replace("--host 0.0.0.0", "--host 127.0.0.1")
                if "--port" not in command:
                    command += " --port 8000"
                command = re.sub(r"--port \d+", f"--port {self.ports['8000']}", command)
            command = self.localize(command)
            if command.startswith("export "):
                self._export(command, block)
                continue
            if SERVE.match(command):
                process, status, output = self._start(command, self.ports["8000"], block)
                if process is not None:
                    self.background.append(Background(block, command, expected, process))
                    continue
            else:
                status, output = self._shell(command, stdin=typed_input(command, expected))
            check_output(block, command, expected, (status, output), self)

    def _export(self, command: str, block: Block) -> None:
        name = command.removeprefix("export ").partition("=")[0]
        status, output = self._shell(f'{command} && printf %s "${name}"')
        assert status == 0 and output, f"{block.where}: `{command}` failed:\n{output}"
        self.env[name] = output

    def _start(
        self, command: str, port: int, block: Block
    ) -> tuple[subprocess.Popen[str] | None, int, str]:
        """Start a server in the background; (None, status, output) if it exited instead."""
        process = subprocess.Popen(
            command,
            **self._bash(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_listening(port, process)
        except RuntimeError:  # it exited: an error the block shows, or a broken command
            output = stop(process)
            return None, process.returncode, output
        except TimeoutError:
            output = stop(process)
            raise AssertionError(f"{block.where}: `{command}` did not listen:\n{output}") from None
        return process, 0, ""

    def _bash(self) -> dict[str, Any]:
        """How every command runs: bash, in the scratch directory, with the file's exports."""
        return {
            "shell": True,
            "executable": "/bin/bash",
            "cwd": self.directory,
            "env": self.env,
            "text": True,
        }

    def _shell(
        self, command: str, *, stdin: str = "", timeout: float = 30 * UNIT
    ) -> tuple[int, str]:
        result = subprocess.run(
            command, **self._bash(), input=stdin, capture_output=True, timeout=timeout
        )
        return result.returncode, result.stdout + result.stderr

    # -- parsed only -----------------------------------------------------------

    def _run_json(self, block: Block, *, run: bool) -> None:
        decoder = json.JSONDecoder()
        text, position = block.source, 0
        while True:
            while position < len(text) and text[position].isspace():
                position += 1
            if position == len(text):
                return
            try:
                _, position = decoder.raw_decode(text, position)
            except json.JSONDecodeError as exc:
                raise AssertionError(f"{block.where}: not JSON: {exc}") from None

    def _run_js(self, block: Block, *, run: bool) -> None:
        node_check(block, block.source)

    _run_javascript = _run_js

    def _run_html(self, block: Block, *, run: bool) -> None:
        for script in re.findall(r"<script[^>]*>(.*?)</script>", block.source, re.S):
            node_check(block, script)


def imports_hub(source: str) -> bool:
    """Whether a Python block imports ``Hub`` itself (a module, not a fragment)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "wirehub":
            if any(alias.name == "Hub" for alias in node.names):
                return True
        elif isinstance(node, ast.Import) and any(a.name == "wirehub" for a in node.names):
            return True
    return False


def console_commands(text: str) -> list[tuple[str, list[str]]]:
    """``$ command`` lines (``\\`` continues them) with the output lines after each."""
    commands: list[tuple[str, list[str]]] = []
    continued = False
    for line in text.splitlines():
        if continued:
            commands[-1] = (commands[-1][0] + "\n" + line, [])
        elif line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line)
        continued = line.endswith("\\") and bool(commands) and not commands[-1][1]
    return commands


def typed_input(command: str, expected: list[str]) -> str:
    """What the reader types into an interactive ``wirehub connect``."""
    if not re.match(r"^(\S*/)?wirehub connect\b", command):
        return ""
    status = ("< ", "connected to ", "disconnected", "error:")
    return "".join(line + "\n" for line in expected if line and not line.startswith(status))


def check_output(
    block: Block,
    command: str,
    expected: list[str],
    result: tuple[int, str],
    session: Session,
) -> None:
    """No traceback, each expected line there, and success unless an error is shown."""
    status, output = result
    where = f"{block.where}: `{command}`"
    failing = any(line.lower().startswith(("error", "usage:")) for line in expected)
    assert failing or status == 0, f"{where} failed ({status}):\n{output}"
    assert "Traceback (most recent call last)" not in output, (
        f"{where} printed a traceback:\n{output}"
    )
    lines = [line.strip() for line in output.splitlines()]
    for line in expected:
        line = session.localize(line).strip()
        if not line or (line in typed_input(command, [line]).splitlines()):
            continue
        assert any(matches(line, actual) for actual in lines), (
            f"{where}: expected output line {line!r} not in:\n{output}"
        )


def matches(expected: str, actual: str) -> bool:
    if expected.startswith("{"):
        try:
            want, got = json.loads(expected), json.loads(actual)
        except ValueError:
            pass
        else:
            return isinstance(got, dict) and set(want) == set(got)
    if "…" in expected:
        pattern = ".*".join(re.escape(part) for part in expected.split("…"))
        return re.fullmatch(pattern, actual) is not None
    return expected == actual


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    return env


def stop(process: subprocess.Popen[str]) -> str:
    """SIGINT the process group we started (a graceful shutdown); return its output."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=15 * UNIT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    return output or ""


def node_check(block: Block, source: str) -> None:
    """``node --check`` an ES module (syntax only: names are not resolved)."""
    node = shutil.which("node")
    assert node is not None, (
        "node is needed to check the JavaScript blocks (scripts/system-deps.sh)"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".mjs") as file:
        file.write(source)
        file.flush()
        result = subprocess.run([node, "--check", file.name], capture_output=True, text=True)
    assert result.returncode == 0, f"{block.where}: JavaScript does not parse:\n{result.stderr}"
