"""``wirehub serve --workers N``: N processes serving one hub on one port.

The parent binds the address with ``SO_REUSEPORT`` but never listens: that
reserves the port (and lets ``--port 0`` pick one the workers then share).
It forks the workers; each binds its own ``SO_REUSEPORT`` socket, runs its
own event loop, and the kernel spreads new connections across them. The
workers share nothing in memory, so the hub needs a broker every process
reaches (``RedisBroker``); the CLI refuses ``--workers`` without one.

The parent only supervises: it restarts a worker that dies (after a delay
that grows while workers keep dying young), and on SIGTERM or SIGINT it
forwards SIGTERM to every worker — each closes its clients with the
shutdown code and drains — waits for them, and returns 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import selectors
import shutil
import signal
import socket
import ssl as _ssl
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wirehub.exceptions import ConfigError
from wirehub.server.serve import run_loop, serve

if TYPE_CHECKING:
    from wirehub.hub.hub import Hub

__all__ = ["run_workers"]

logger = logging.getLogger("wirehub.server")

YOUNG = 1.0  # a worker that dies sooner than this after starting is crash-looping
MAX_RESTART_DELAY = 10.0
KILL_GRACE = 5.0  # after the hub's shutdown timeout, before SIGKILL


@dataclasses.dataclass
class _Worker:
    slot: int
    pid: int = 0
    started: float = 0.0
    failures: int = 0  # consecutive young deaths
    restart_at: float | None = None  # waiting to be restarted


def run_workers(
    hub: Hub,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int,
    ssl: _ssl.SSLContext | None = None,
    shutdown_code: int = 1001,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Serve ``hub`` from ``workers`` forked processes until SIGTERM/SIGINT; return the exit code.

    ``on_ready(url)`` is called once every worker is listening. Raises
    ``OSError`` when the address cannot be bound.
    """
    if workers < 1:
        raise ConfigError("workers is 1 or more")
    if not hasattr(socket, "SO_REUSEPORT") or not hasattr(os, "fork"):
        raise ConfigError("several workers need fork() and SO_REUSEPORT (Linux, BSD, macOS)")
    _warn_about_threads()
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = info[0]
    reserved = _reuseport_socket(family, address)
    try:
        with _metrics_for_workers(hub, family, address, workers):
            bound = reserved.getsockname()
            scheme = "https" if ssl is not None else "http"
            name = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
            url = f"{scheme}://{name}:{bound[1]}"
            supervisor = _Supervisor(hub, family, bound, workers, ssl, shutdown_code, reserved)
            return supervisor.run(lambda: on_ready(url) if on_ready is not None else None)
    finally:
        reserved.close()


@contextlib.contextmanager
def _metrics_for_workers(hub: Hub, family: int, address: Any, count: int) -> Iterator[None]:
    """Prepare ``hub.metrics`` for workers: a private folder for their sockets, its port reserved.

    Each worker learns its slot in ``_become_worker`` (``Metrics.workers``).
    """
    metrics = hub.metrics
    if metrics is None:
        yield
        return
    from wirehub.hub.metrics import Workers  # loaded with the metrics (prometheus-client)

    directory = Path(tempfile.mkdtemp(prefix="wirehub-metrics-"))  # mode 0700
    metrics.workers = Workers(-1, count, directory)
    reserved = None
    try:
        if metrics.port is not None:
            reserved = _reuseport_socket(family, (address[0], metrics.port, *address[2:]))
            metrics.port = reserved.getsockname()[1]  # port 0: the one the kernel picked
        yield
    finally:
        if reserved is not None:
            reserved.close()
        metrics.workers = None
        shutil.rmtree(directory, ignore_errors=True)


def _warn_about_threads() -> None:
    """Threads started when the app was imported stay in this supervisor: fork copies only
    the calling thread, and the hub serves nobody here (their ``emit_threadsafe`` raises)."""
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if threads:
        logger.error(
            "%d thread(s) started before the workers were forked (%s) run only in the "
            "supervisor, which serves no clients: their emits reach nobody. Start producers "
            "from an @hub.on_startup hook (hub.start_background_task), or use wirehub.Emitter "
            "(docs/frameworks.md)",
            len(threads),
            ", ".join(threads),
        )


def _reuseport_socket(family: int, address: Any) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


class _Supervisor:
    """The parent's loop: signals and readiness arrive on pipes watched by one selector."""

    def __init__(
        self,
        hub: Hub,
        family: int,
        address: Any,
        count: int,
        ssl: _ssl.SSLContext | None,
        shutdown_code: int,
        reserved: socket.socket,
    ) -> None:
        self.hub = hub
        self.family = family
        self.address = address
        self.ssl = ssl
        self.shutdown_code = shutdown_code
        self.reserved = reserved
        self.workers = [_Worker(slot) for slot in range(count)]
        self.signals: list[int] = []
        self.stopping_since: float | None = None
        self.announced = False
        self.ready: set[int] = set()  # pids that reported listening
        self.killed = False

    def run(self, announce: Callable[[], None]) -> int:
        wake_r, wake_w = os.pipe()
        ready_r, ready_w = os.pipe()
        os.set_blocking(wake_w, False)
        self.pipes = (wake_r, wake_w, ready_r, ready_w)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}
        old_wakeup = signal.set_wakeup_fd(wake_w)
        self.selector = selectors.DefaultSelector()
        self.selector.register(wake_r, selectors.EVENT_READ)
        self.selector.register(ready_r, selectors.EVENT_READ)
        try:
            for worker in self.workers:
                self._spawn(worker)
            return self._loop(announce)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.selector.close()
            for fd in self.pipes:
                os.close(fd)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    def _loop(self, announce: Callable[[], None]) -> int:
        wake_r, _, ready_r, _ = self.pipes
        buffered = b""
        while True:
            for key, _ in self.selector.select(self._timeout()):
                if key.fd == wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                else:
                    buffered += os.read(ready_r, 4096)
                    *lines, buffered = buffered.split(b"\n")
                    self.ready.update(int(line) for line in lines)
            self._handle_signals()
            self._reap()
            if self.stopping_since is not None:
                if not any(w.pid for w in self.workers):
                    return 1 if self.killed else 0
                if time.monotonic() > self.stopping_since + self._grace():
                    self._kill_all()
                continue
            self._restart_due()
            if not self.announced and all(w.pid in self.ready for w in self.workers):
                self.announced = True
                logger.info("%d workers listening", len(self.workers))
                announce()

    def _timeout(self) -> float | None:
        now = time.monotonic()
        if self.stopping_since is not None:
            return max(0.0, self.stopping_since + self._grace() - now)
        due = [w.restart_at for w in self.workers if w.restart_at is not None]
        return max(0.0, min(due) - now) if due else None

    def _grace(self) -> float:
        return self.hub.timeouts.shutdown + KILL_GRACE

    def _handle_signals(self) -> None:
        signals, self.signals = self.signals, []
        if self.stopping_since is None and any(s != signal.SIGCHLD for s in signals):
            logger.info("shutting down %d workers", sum(1 for w in self.workers if w.pid))
            self.stopping_since = time.monotonic()
            for worker in self.workers:
                worker.restart_at = None
                if worker.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGTERM)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers if w.pid == pid), None)
            if worker is None:
                continue
            worker.pid = 0
            self.ready.discard(pid)
            if self.stopping_since is None:
                self._schedule_restart(worker, pid, status)

    def _schedule_restart(self, worker: _Worker, pid: int, status: int) -> None:
        lived = time.monotonic() - worker.started
        worker.failures = worker.failures + 1 if lived < YOUNG else 0
        delay = min(MAX_RESTART_DELAY, 0.1 * 2**worker.failures) if worker.failures else 0.0
        logger.warning(
            "worker %d (pid %d) %s after %.1fs; restarting it%s",
            worker.slot,
            pid,
            _describe(status),
            lived,
            f" in {delay:.1f}s" if delay else "",
        )
        worker.restart_at = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.restart_at is not None and worker.restart_at <= now:
                worker.restart_at = None
                self._spawn(worker)

    def _kill_all(self) -> None:
        for worker in self.workers:
            if worker.pid:
                logger.warning(
                    "worker %d (pid %d) did not stop; killing it", worker.slot, worker.pid
                )
                self.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)

    # -- the worker side -----------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        parent = os.getpid()
        sys.stdout.flush()  # or the worker would write the parent's buffered output again
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            worker.pid = pid
            worker.started = time.monotonic()
            return
        code = 1
        try:
            self._become_worker(parent, worker.slot)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _become_worker(self, parent: int, slot: int) -> None:
        metrics = self.hub.metrics
        if metrics is not None and metrics.workers is not None:
            metrics.workers = dataclasses.replace(metrics.workers, slot=slot)
        signal.set_wakeup_fd(-1)
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        _die_with(parent)
        self.selector.close()
        wake_r, wake_w, ready_r, ready_w = self.pipes
        for fd in (wake_r, wake_w, ready_r):
            os.close(fd)
        self.reserved.close()
        sock = _reuseport_socket(self.family, self.address)
        run_loop(self._serve(sock, ready_w))

    async def _serve(self, sock: socket.socket, ready_w: int) -> None:
        code = self.shutdown_code
        serving = serve(self.hub, sock=sock, ssl=self.ssl, shutdown_code=code, handle_signals=True)
        async with serving as server:
            os.write(ready_w, b"%d\n" % os.getpid())
            await server.serve_forever()


_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)


def _die_with(parent: int) -> None:
    """Have the kernel SIGTERM this worker if the parent dies (Linux), so none is orphaned."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with {os.waitstatus_to_exitcode(status)}"
