#!/usr/bin/env python3
"""Run the benchmark matrix (servers x workloads) and report every peer as a ratio.

    python bench/run.py                      # full matrix, medians of 3 runs
    python bench/run.py --quick              # smoke: tiny sizes, 1 run, < 60 s
    python bench/run.py --servers websockets,picows --workloads echo_latency,fanout_1k

Each server is pinned to core 0 and the load generator to core 1. A full run
starts a fresh server for every (workload, repeat); ``--quick`` shares one
server per peer (two when the deflate workload needs ``--compression``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from registry import BASELINES, Server, available  # noqa: E402
from report import render  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from wirehub.loadgen.metrics import server_cpu_s  # noqa: E402
from wirehub.loadgen.workloads import WORKLOADS  # noqa: E402

SERVER_CORE, LOADGEN_CORE = 0, 1
PEERS = (
    "websockets",
    "aiohttp",
    "picows",
    "python-socketio",
    "python-engineio",
    "uvicorn",
    "uvloop",
    "wirehub",
)


@dataclass
class Job:
    """One server process and the workloads the load generator runs against it."""

    server: str
    spec: Server
    workloads: list[str]
    compression: bool
    repeat: int


def pinned(core: int, cmd: list[str]) -> list[str]:
    # taskset execs the command, so the Popen pid is the server's own pid (for /proc).
    return ["taskset", "-c", str(core), *cmd] if shutil.which("taskset") else cmd


def free_port(start: int) -> int:
    for port in range(start, start + 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


class PortTaken(RuntimeError):
    """Another process listens on the port chosen for a server (taken after ``free_port``)."""


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the socket listening on ``port`` (Linux ``/proc``;
    True where there is no ``/proc`` to ask)."""
    if not os.path.isdir("/proc/net"):
        return True
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    sockets.add(f"socket:[{fields[9]}]")  # 0A: LISTEN
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in sockets:
                    return True
    return False


def wait_listening(
    proc: subprocess.Popen[bytes], port: int, timeout: float = 20.0, interval: float = 0.05
) -> None:
    """Wait until ``proc`` listens on ``port``; PortTaken if someone else does and
    ``proc`` exits (its bind failed): a run must never measure another process."""
    deadline = time.monotonic() + timeout
    foreign = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if foreign:
                raise PortTaken(f"port {port} is held by another process")
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            time.sleep(interval)
            continue
        if listens(proc.pid, port):
            return
        foreign = True
        time.sleep(interval)
    raise RuntimeError(f"server not listening on {port} after {timeout}s")


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def read_lines(proc: subprocess.Popen[bytes], deadline: float) -> Any:
    """Yield stdout lines of ``proc`` until EOF or ``deadline`` (monotonic).

    Raw os.read, not readline: a buffered reader could hold a line select() can't see.
    """
    assert proc.stdout is not None
    fd, buf = proc.stdout.fileno(), b""
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        *lines, buf = (buf + chunk).split(b"\n")
        yield from (line for line in lines if line.strip())
    raise TimeoutError("load generator exceeded its time limit")


class Supervised:
    """A job's server process. With a ``pid_file`` (the reconnect storm's restart),
    a server that exits is started again on the same port, and once it listens
    its pid and CPU seconds so far are written there for the load generator."""

    def __init__(self, cmd: list[str], port: int, log: IO[bytes], pid_file: Path | None) -> None:
        self.cmd, self.port, self.log, self.pid_file = cmd, port, log, pid_file
        self.proc = self._start()
        self.stopping = False
        self.restarts = 0
        self.lock = threading.Lock()  # no restart may begin once stop() has
        self.watcher: threading.Thread | None = None
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
            self.watcher = threading.Thread(target=self._watch, daemon=True)
            self.watcher.start()

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            pinned(SERVER_CORE, self.cmd), stdout=self.log, stderr=self.log, cwd=BENCH
        )

    def _watch(self) -> None:
        assert self.pid_file is not None
        while not self.stopping:
            if self.proc.poll() is None:
                time.sleep(0.002)
                continue
            with self.lock:
                if self.stopping:
                    return  # it exited because stop() stopped it
                self.proc = self._start()
            self.restarts += 1
            try:
                wait_listening(self.proc, self.port, interval=0.002)
            except RuntimeError:
                return
            staged = self.pid_file.with_suffix(".tmp")
            staged.write_text(f"{self.proc.pid} {server_cpu_s(self.proc.pid)}")
            staged.replace(self.pid_file)  # the load generator never reads half a file

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
        if self.watcher is not None:
            self.watcher.join(30)
        stop(self.proc)
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)


def run_job(job: Job, port: int, quick: bool, log: IO[bytes]) -> Any:
    """Start the server, run the load generator, yield one result dict per workload."""
    log.write(f"\n=== {job.server} {job.workloads} repeat={job.repeat}\n".encode())
    log.flush()
    cmd = [sys.executable, str(job.spec.path), "--port", str(port), *job.spec.args]
    restarts = any(WORKLOADS[w].restarts for w in job.workloads)
    pid_file = BENCH / "results" / "raw" / f"server.{port}.pid" if restarts else None
    supervised = Supervised(
        cmd + (["--compression"] if job.compression else []), port, log, pid_file
    )
    server = supervised.proc
    loadgen: subprocess.Popen[bytes] | None = None
    pending = list(job.workloads)
    try:
        wait_listening(server, port)
        limit = sum(WORKLOADS[w].limit_s for w in job.workloads) * (0.25 if quick else 1.0)
        loadgen = subprocess.Popen(
            pinned(
                LOADGEN_CORE,
                [
                    sys.executable,
                    "-m",
                    "wirehub.loadgen",
                    "--port",
                    str(port),
                    "--server-pid",
                    str(server.pid),
                    "--dialect",
                    job.spec.dialect,
                    "--workloads",
                    ",".join(job.workloads),
                    *(["--quick"] if quick else []),
                    *(["--pid-file", str(pid_file)] if pid_file else []),
                ],
            ),
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=BENCH,
        )
        for line in read_lines(loadgen, time.monotonic() + limit + 10):
            result = json.loads(line)
            pending.remove(result["workload"])
            yield result
        if pending:
            raise RuntimeError(f"load generator exited with {loadgen.wait(5)} (see servers.log)")
        if supervised.proc.poll() is not None:
            raise RuntimeError(f"server died (exit {supervised.proc.returncode})")
    except PortTaken:
        raise  # nothing measured yet: the caller tries another port
    except Exception as exc:
        for name in pending:
            yield {"workload": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        if loadgen is not None:
            stop(loadgen)
        supervised.stop()


def plan(servers: dict[str, Server], workloads: list[str], repeat: int, shared: bool) -> list[Job]:
    """Fresh server per run, interleaved (repeat > workload > server) so that background
    noise on the machine spreads over all peers instead of hitting one of them."""
    jobs: list[Job] = []
    for rep in range(repeat):
        if shared:  # one server per peer and compression setting
            for name, spec in servers.items():
                for compression in (False, True):
                    group = [w for w in workloads if WORKLOADS[w].deflate == compression]
                    if group and (spec.deflate or not compression):
                        jobs.append(Job(name, spec, group, compression, rep))
            continue
        for w in workloads:
            deflate = WORKLOADS[w].deflate
            jobs += [
                Job(name, spec, [w], deflate, rep)
                for name, spec in servers.items()
                if spec.deflate or not deflate
            ]
    return jobs


def noisy(run: dict[str, Any], limit: float) -> bool:
    """Other processes kept > ``limit`` % of a core busy on our two cores during the window.

    Windows under 1 s are never called noisy: 10 ms tick counters can't tell there.
    """
    return bool(run.get("wall_s", 0) >= 1.0 and run.get("other_cpu_pct", 0) > limit)


def median_of(runs: list[dict[str, Any]], noise_limit: float) -> dict[str, Any]:
    """Median of every numeric field over the successful, quiet runs.

    On a shared machine a run that overlapped someone else's CPU burst is left
    out when a quieter run of the same cell exists; with none, all successful
    runs count (and the cell is marked). All runs count if none succeeded.
    """
    ok = [r for r in runs if r.get("ok")]
    quiet = [r for r in ok if not noisy(r, noise_limit)]
    pool = quiet or ok or runs
    out: dict[str, Any] = {
        "ok": len(ok) == len(runs),
        "runs": len(runs),
        "ok_runs": len(ok),
        "noisy_runs_dropped": len(ok) - len(quiet) if quiet else 0,
        "noisy": bool(ok) and not quiet,
    }
    keys = {
        k
        for r in pool
        for k, v in r.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    for key in sorted(keys):
        values = [r[key] for r in pool if isinstance(r.get(key), int | float)]
        out[key] = statistics.median(values)
    out["loadgen_saturated"] = any(r.get("loadgen_saturated") for r in pool)
    errors = [r["error"] for r in runs if r.get("error")]
    if errors:
        out["error"] = errors[0]
    if "deflate_negotiated" in pool[0]:
        out["deflate_negotiated"] = all(r.get("deflate_negotiated") for r in pool)
    out["params"] = pool[0].get("params")
    return out


def git_commit() -> str:
    """The commit measured (wirehub's server code is the working tree's)."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=BENCH,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    found = {}
    for name in PEERS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat, shared servers")
    parser.add_argument("--servers", help="comma list (default: all available)")
    parser.add_argument("--workloads", help=f"comma list of {', '.join(WORKLOADS)}")
    parser.add_argument("--repeat", type=int, help="runs per cell, median reported (3; quick: 1)")
    parser.add_argument(
        "--json",
        type=Path,
        help="results file (default bench/results/latest.json;"
        " quick: bench/results/raw/quick.json)",
    )
    parser.add_argument("--png", type=Path, help="chart (default: the JSON path with .png)")
    parser.add_argument("--port", type=int, default=9100, help="first port to try")
    parser.add_argument("--list", action="store_true", help="list servers and workloads, exit")
    parser.add_argument(
        "--max-noise",
        type=float,
        default=25.0,
        help="drop runs where other processes used more than this %% of a core on the two"
        " benchmark cores, when a quieter run of the same cell exists (default 25)",
    )
    parser.add_argument(
        "--shared-server",
        action="store_true",
        help="one server per peer for all workloads (default in --quick)",
    )
    parser.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="exit 1 if any run failed (default: on in --quick, off otherwise)",
    )
    return parser.parse_args()


def exclusive(path: Path) -> IO[str]:
    """Hold a lock for the whole run: two runs at once would measure each other."""
    handle = open(path, "w")  # noqa: SIM115 - kept open until the process exits
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another bench run holds {path}; waiting for it to finish", file=sys.stderr)
        fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwind through run_job's finally: servers get stopped


def main() -> int:
    signal.signal(signal.SIGTERM, on_sigterm)
    args = parse_args()
    known = available()
    if args.list:
        print("servers:", ", ".join(known))
        print("workloads:", ", ".join(WORKLOADS))
        return 0
    servers = {name: spec for name, spec in known.items() if not spec.optional}
    if args.servers:
        wanted = args.servers.split(",")
        unknown = [s for s in wanted if s not in known]
        if unknown:
            sys.exit(f"unknown or unavailable servers: {unknown}; available: {list(known)}")
        servers = {name: known[name] for name in wanted}
    workloads = args.workloads.split(",") if args.workloads else list(WORKLOADS)
    if args.quick and not args.workloads:  # variants that are the same at --quick sizes
        workloads = [w for w in workloads if WORKLOADS[w].smoke]
    if unknown := [w for w in workloads if w not in WORKLOADS]:
        sys.exit(f"unknown workloads: {unknown}; known: {list(WORKLOADS)}")
    repeat = args.repeat or (1 if args.quick else 3)
    strict = args.quick if args.strict is None else args.strict
    json_path = args.json or BENCH / "results" / ("raw/quick.json" if args.quick else "latest.json")
    png_path = args.png or json_path.with_suffix(".png")
    raw_dir = BENCH / "results" / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    lock = exclusive(raw_dir / ".lock")

    commit = git_commit()  # at the start: the code the run measures
    jobs = plan(servers, workloads, repeat, args.shared_server or args.quick)
    total = sum(len(j.workloads) for j in jobs)
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    port = args.port
    with (
        open(raw_dir / "servers.log", "wb") as log,
        Progress(
            TextColumn("{task.description:<40}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        ) as progress,
    ):
        task = progress.add_task("starting", total=total)
        for job in jobs:
            for _ in range(3):  # a port taken between free_port and the server's bind
                port = free_port(port + 1)
                progress.update(
                    task, description=f"{job.server} · {job.workloads[0]} · #{job.repeat + 1}"
                )
                try:
                    # closing(): the finally in run_job stops both processes even on Ctrl-C.
                    with contextlib.closing(run_job(job, port, args.quick, log)) as results:
                        for result in results:
                            result.update(server=job.server, repeat=job.repeat)
                            runs.append(result)
                            status = "ok" if result.get("ok") else "FAILED"
                            progress.update(
                                task,
                                advance=1,
                                description=f"{job.server} · {result['workload']} · {status}",
                            )
                    break
                except PortTaken as exc:
                    log.write(f"{exc}: the job starts again on another port\n".encode())

    summary: dict[str, dict[str, Any]] = {}
    for name in servers:
        for workload in workloads:
            cell = [r for r in runs if r["server"] == name and r["workload"] == workload]
            if cell:
                summary.setdefault(name, {})[workload] = median_of(cell, args.max_noise)
    baseline = next((b for b in BASELINES if b in summary), next(iter(summary), ""))
    seconds = round(time.monotonic() - started, 1)
    doc: dict[str, Any] = {
        "meta": {
            "command": "python bench/run.py " + " ".join(sys.argv[1:]),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "repeat": repeat,
            "shared_server": args.shared_server or args.quick,
            "max_noise_pct": args.max_noise,
            "git": commit,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "versions": versions(),
            "cores": {"server": SERVER_CORE, "loadgen": LOADGEN_CORE},
            "seconds": seconds,
        },
        "baseline": baseline,
        "servers": list(servers),
        "workloads": workloads,
        "summary": summary,
        "runs": runs,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=1))
    render(doc, png_path, json_path.with_suffix(".md"))
    failed = [f"{r['server']}/{r['workload']}: {r.get('error')}" for r in runs if not r.get("ok")]
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    md_path = json_path.with_suffix(".md")
    print(f"wrote {json_path}, {png_path}, {md_path} in {seconds} s")
    lock.close()
    return 1 if strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
