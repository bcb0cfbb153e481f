"""Real services for the scaling tests: ``redis-server`` (and a Redis Cluster) on loopback,
and ``wirehub serve`` processes.

Each runs from its binary in a temporary directory, on a free 127.0.0.1
port (Redis without persistence unless asked), and is stopped by the fixture
that started it, by PID. Readiness is the one thing polled (with a
deadline): a process gives no event when it starts listening.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

UNIT = float(os.environ.get("WIREHUB_TEST_UNIT", "1.0"))  # conftest.UNIT (which imports us)

__all__ = [
    "RedisServer",
    "Service",
    "WirehubServer",
    "free_port",
    "prefix",
    "redis_cluster",
    "redis_server",
    "redis_url",
    "running_cluster",
    "running_redis",
    "wait_listening",
]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START = 10 * UNIT


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until something accepts TCP connections on ``port`` (a process's readiness)."""
    deadline = time.monotonic() + START
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=UNIT):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on port {port} after {START}s") from None
            time.sleep(0.01)


def redis_command(port: int, *args: str) -> bytes:
    """Send one command in RESP and return the raw reply (enough for PING and CLUSTER INFO)."""
    request = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=UNIT) as sock:
        sock.sendall(request.encode())
        return sock.recv(65536)


class Service:
    """A server process on a fixed port: ``kill()`` it (a crash) or ``stop()`` it, then
    ``start()`` it again on the same port."""

    process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        """SIGKILL the server at once (a crash: clients see their connections reset)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        """SIGTERM (SIGCONT first, in case a test paused it), SIGKILL after a while."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(START)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None


class RedisServer(Service):
    """One ``redis-server`` process; ``kill()`` and ``start()`` again keep its port."""

    def __init__(self, directory: Path, port: int | None = None, *extra: str) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START
        while True:
            wait_listening(self.port, self.process)
            with contextlib.suppress(OSError):
                if redis_command(self.port, "PING") == b"+PONG\r\n":
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis on {self.port} never answered PING")
            time.sleep(0.01)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): sockets stay open but nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


class WirehubServer(Service):
    """One ``wirehub serve`` process on a fixed port; ``kill()`` and ``start()`` again keep it.

    ``args`` follow ``wirehub serve APP --port PORT`` (e.g. ``--workers 2``),
    ``env`` is added to this process's environment. Each start logs to its
    own file in ``directory`` (``log()`` returns the latest). With workers,
    add the worker pids you learn to ``pids``: ``stop()`` makes sure they
    are gone too.
    """

    def __init__(
        self, directory: Path, app: str, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.directory = directory
        self.app = app
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.pids: set[int] = set()
        self.starts = 0

    def ws(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        """Start the server and wait until it announces that it serves (all workers ready)."""
        self.starts += 1
        path = self.directory / f"wirehub-{self.port}-{self.starts}.log"
        command = [sys.executable, "-m", "wirehub", "serve", self.app, "--port", str(self.port)]
        with open(path, "wb") as log:
            self.process = subprocess.Popen(
                [*command, *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=Path(__file__).resolve().parent.parent,
            )
        deadline = time.monotonic() + START
        while b"wirehub serving" not in path.read_bytes():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"wirehub serve exited with {self.process.returncode}:\n" + self.log()
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"wirehub serve did not announce itself in {START}s")
            time.sleep(0.01)

    def log(self) -> str:
        """What the latest start wrote (stdout and stderr)."""
        path = self.directory / f"wirehub-{self.port}-{self.starts}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop the server (graceful: clients are closed), then any worker left over."""
        super().stop()
        deadline = time.monotonic() + START  # workers die with their parent (PDEATHSIG)
        while (alive := {pid for pid in self.pids if _alive(pid)}) and time.monotonic() < deadline:
            time.sleep(0.01)
        for pid in alive:
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def running_redis(*extra: str) -> Iterator[RedisServer]:
    """A redis-server in a temporary directory for the ``with`` block."""
    with tempfile.TemporaryDirectory(prefix="wirehub-redis-") as directory:
        server = RedisServer(Path(directory), None, *extra)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session; tests keep apart through their own ``prefix``."""
    with running_redis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def prefix() -> str:
    """A key and channel prefix no other test uses."""
    return f"t{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[list[RedisServer]]:
    """A 3-primary Redis Cluster on loopback (slots split three ways, no replicas)."""
    with running_cluster() as nodes:
        yield nodes


SLOTS = [(0, 5460), (5461, 10922), (10923, 16383)]  # the primaries', in order


@contextlib.contextmanager
def running_cluster(replicas: int = 0) -> Iterator[list[RedisServer]]:
    """A 3-primary Redis Cluster on loopback, slots split as ``SLOTS``, with ``replicas``
    replicas per primary: the primaries first, then primary i's replicas at
    ``3 + 3 * r + i``. Returns once every node sees the whole cluster healthy and every
    replica is in sync."""
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wirehub-rc-")))
        count = 3 * (1 + replicas)
        nodes: list[RedisServer] = []
        bus = [free_port() for _ in range(count)]  # by default port + 10000: maybe past 65535
        for i in range(count):
            (directory / str(i)).mkdir()
            node = RedisServer(
                directory / str(i),
                None,
                "--cluster-port",
                str(bus[i]),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            )
            stack.callback(node.stop)
            node.start()
            nodes.append(node)
        for node, (low, high) in zip(nodes, SLOTS, strict=False):
            assert redis_command(node.port, "CLUSTER", "ADDSLOTSRANGE", str(low), str(high)) == (
                b"+OK\r\n"
            )
        for node in nodes[1:]:
            meet = ("CLUSTER", "MEET", "127.0.0.1", str(nodes[0].port), str(bus[0]))
            assert redis_command(node.port, *meet) == b"+OK\r\n"
        known = f"cluster_known_nodes:{count}".encode()
        _until(nodes, lambda info: known in info, "CLUSTER", "INFO")
        for i, replica in enumerate(nodes[3:]):
            primary = _reply_text(redis_command(nodes[i % 3].port, "CLUSTER", "MYID"))
            assert redis_command(replica.port, "CLUSTER", "REPLICATE", primary) == b"+OK\r\n"
        _until(nodes[3:], lambda info: b"master_link_status:up" in info, "INFO", "replication")
        _until(nodes, lambda info: b"cluster_state:ok" in info, "CLUSTER", "INFO")
        yield nodes


def _until(nodes: list[RedisServer], ready: Callable[[bytes], bool], *command: str) -> None:
    """Poll ``command`` on every node until ``ready`` says yes for each (cluster gossip
    gives no event to wait on)."""
    deadline = time.monotonic() + START
    for node in nodes:
        while not ready(redis_command(node.port, *command)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{' '.join(command)} on {node.port}: not ready in {START}s")
            time.sleep(0.02)


def _reply_text(reply: bytes) -> str:
    """The text of a one-line or bulk-string RESP reply."""
    return reply.split(b"\r\n")[-2 if reply[:1] == b"$" else 0].lstrip(b"+").decode()
