"""Run the Autobahn|Testsuite against a WebSocket echo server and gate on the report.

Usage (from anywhere; paths are relative to the repository root):

    python compliance/run.py --cases quick            # 337 cases, ~2 min
    python compliance/run.py --cases full             # all 517 cases, ~10 min
    python compliance/run.py --cases "7.1.*,9.3.1"    # any wstest case patterns
    python compliance/run.py --cases quick --agent websockets
        --server-cmd "{python} compliance/reference_echo.py --port {port}"

The runner picks a free port on 127.0.0.1, starts ``--server-cmd`` (a template
with ``{port}``, ``{python}`` = this interpreter and ``{root}`` = the repository
root), waits until the port accepts connections, runs ``wstest -m
fuzzingclient`` on a generated spec.json, and always stops the server's process
group. It then gates on OUTDIR/index.json, never on wstest's exit code (which is
always 0): the report must hold exactly the selected cases, and every
``behavior`` and ``behaviorClose`` must be OK, NON-STRICT, INFORMATIONAL or
UNIMPLEMENTED. Exit status: 0 pass, 1 gate failed, 2 could not run.

wstest comes from compliance/install_wstest.sh (into <root>/.tools/). Stdlib only.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WSTEST = ROOT / ".tools" / "wstest-venv" / "bin" / "wstest"
REPORTS = ROOT / "compliance" / "reports"
MARKER = ".wirehub-compliance"  # marks an outdir this runner may wipe

DEFAULT_SERVER_CMD = (
    "{python} -m wirehub serve examples/echo.py:hub --host 127.0.0.1 --port {port}"
    " --max-message-size 16777216"
)
DEFAULT_URL = "ws://127.0.0.1:{port}/echo"

GOOD = frozenset({"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"})

# The case catalogue of autobahntestsuite 25.10.1 (pinned in
# constraints-py27.txt): "X.Y" -> N means cases X.Y.1 .. X.Y.N; "2" -> 11 means
# 2.1 .. 2.11. 517 cases in all. Used to know how many cases a selection must
# produce, so a server that dies mid-run (wstest then skips the rest and still
# writes a shorter report) cannot pass.
CATALOGUE: dict[str, int] = {
    "1.1": 8, "1.2": 8, "2": 11, "3": 7, "4.1": 5, "4.2": 5, "5": 20,
    "6.1": 3, "6.2": 4, "6.3": 2, "6.4": 4, "6.5": 5, "6.6": 11, "6.7": 4, "6.8": 2,
    "6.9": 4, "6.10": 3, "6.11": 5, "6.12": 8, "6.13": 5, "6.14": 10, "6.15": 1,
    "6.16": 3, "6.17": 5, "6.18": 5, "6.19": 5, "6.20": 7, "6.21": 8, "6.22": 34,
    "6.23": 7, "7.1": 6, "7.3": 6, "7.5": 1, "7.7": 13, "7.9": 9, "7.13": 2,
    "9.1": 6, "9.2": 6, "9.3": 9, "9.4": 9, "9.5": 6, "9.6": 6, "9.7": 6, "9.8": 6,
    "10.1": 1,
    "12.1": 18, "12.2": 18, "12.3": 18, "12.4": 18, "12.5": 18,
    "13.1": 18, "13.2": 18, "13.3": 18, "13.4": 18, "13.5": 18, "13.6": 18, "13.7": 18,
}  # fmt: skip

# "quick" keeps every non-compression case plus the first group of each
# compression category (12.1: deflate with different payloads, 13.1: one set of
# deflate parameters); the other 12.x/13.x groups take ~95 % of the run time.
# Patterns are wstest's: "." literal, "*" any text, matched at the start of the
# id ("1.*" selects 1.1.1 but not 10.1.1). "exclude-cases": ["12.*", "13.*"]
# would drop 12.1/13.1 too.
SELECTIONS: dict[str, list[str]] = {
    "quick": [f"{n}.*" for n in range(1, 11)] + ["12.1.*", "13.1.*"],
    "full": ["*"],
}


@dataclass(frozen=True)
class Outcome:
    """What the report says about one case."""

    case: str
    behavior: str
    behavior_close: str
    close_code: Any
    duration_ms: Any
    reportfile: str

    @property
    def ok(self) -> bool:
        return self.behavior in GOOD and self.behavior_close in GOOD


class RunError(Exception):
    """The suite could not be run (as opposed to: it ran and the server failed)."""


# -- case selection ----------------------------------------------------------


def all_cases() -> list[str]:
    """Every case id in the catalogue, in wstest's order."""
    ids = [f"{group}.{i}" for group, n in CATALOGUE.items() for i in range(1, n + 1)]
    return sorted(ids, key=case_key)


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))


def select(patterns: list[str]) -> list[str]:
    """Resolve patterns exactly like wstest's CaseSet.resolveCasePatternList."""
    chosen: set[str] = set()
    for pattern in patterns:
        if "*" in pattern:
            regex = re.compile(pattern.replace(".", r"\.").replace("*", ".*"))
            chosen.update(case for case in all_cases() if regex.match(case))
        else:
            chosen.add(pattern)
    return sorted(chosen, key=case_key)


def parse_selection(value: str) -> tuple[str, list[str]]:
    """Return (name, patterns) for "quick", "full" or comma-separated patterns."""
    if value in SELECTIONS:
        return value, SELECTIONS[value]
    patterns = [p.strip() for p in value.split(",") if p.strip()]
    unknown = [p for p in patterns if "*" not in p and p not in set(all_cases())]
    if not patterns or unknown:
        raise RunError(f"--cases: unknown case ids {unknown or value!r}")
    return "custom", patterns


# -- processes ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the runner itself is killed (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start argv in its own process group, output to log."""
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # The leader may be gone while the group lingers: sweep it once more.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def server_env() -> dict[str, str]:
    """Our environment, with <root>/src importable even if wirehub is not installed."""
    env = dict(os.environ)
    paths = [str(ROOT / "src"), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


@contextlib.contextmanager
def running(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start(argv, log, server_env())
    try:
        yield proc
    finally:
        stop(proc)


def wait_for_port(url: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Wait until the URL's host and port accept TCP connections."""
    parts = urllib.parse.urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RunError(f"server exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(address, timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RunError(f"nothing accepted connections on {address[0]}:{address[1]} in {timeout:g} s")


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def wstest_env() -> dict[str, str]:
    """Our environment minus what would leak Python 3 settings into Python 2."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONWARNINGS"] = "ignore"  # Python 2 deprecation banners from cryptography
    return env


def run_wstest(wstest: Path, spec: Path, log: Path, timeout: float) -> None:
    proc = start([str(wstest), "-m", "fuzzingclient", "-s", str(spec)], log, wstest_env())
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunError(f"wstest did not finish within {timeout:g} s") from None
    finally:
        stop(proc)


# -- report ------------------------------------------------------------------


@contextlib.contextmanager
def locked(outdir: Path) -> Iterator[None]:
    """Hold <outdir>.lock: two runs sharing an outdir would wipe each other's report."""
    outdir.parent.mkdir(parents=True, exist_ok=True)
    with (outdir.parent / f"{outdir.name}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another compliance run using {outdir} ...", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def prepare_outdir(outdir: Path) -> None:
    """Create outdir empty; refuse to wipe a non-empty directory we did not make."""
    if outdir.exists() and any(outdir.iterdir()):
        if not (outdir / MARKER).exists():
            raise RunError(f"{outdir} is not empty and was not made by this runner")
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / MARKER).write_text("made by compliance/run.py; wiped on each run\n")


def write_spec(outdir: Path, agent: str, url: str, patterns: list[str]) -> Path:
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": agent, "url": url}],
        "cases": patterns,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    path = outdir / "spec.json"
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def read_report(outdir: Path, agent: str) -> list[Outcome]:
    index = outdir / "index.json"
    if not index.exists():
        raise RunError(f"wstest wrote no {index}")
    data = json.loads(index.read_text())
    if agent not in data:
        raise RunError(f"{index} has no agent {agent!r} (has {sorted(data)})")
    return [
        Outcome(
            case=case,
            behavior=str(r.get("behavior")),
            behavior_close=str(r.get("behaviorClose")),
            close_code=r.get("remoteCloseCode"),
            duration_ms=r.get("duration"),
            reportfile=str(r.get("reportfile", "")),
        )
        for case, r in sorted(data[agent].items(), key=lambda item: case_key(item[0]))
    ]


def summarize(outcomes: list[Outcome], expected: list[str]) -> tuple[bool, str]:
    """Return (passed, human-readable summary) for the gate."""
    lines: list[str] = []
    seen = {o.case for o in outcomes}
    missing = [c for c in expected if c not in seen]
    extra = sorted(seen - set(expected), key=case_key)
    failed = [o for o in outcomes if not o.ok]

    behavior = collections.Counter(o.behavior for o in outcomes)
    close = collections.Counter(o.behavior_close for o in outcomes)
    names = sorted(set(behavior) | set(close), key=lambda b: (b not in GOOD, b))
    lines.append(f"{'behaviour':<15}{'behavior':>10}{'behaviorClose':>15}")
    for name in names:
        lines.append(f"{name:<15}{behavior[name]:>10}{close[name]:>15}")
    lines.append(f"{'total':<15}{len(outcomes):>10}{len(outcomes):>15}")
    lines.append(f"cases: {len(outcomes)} reported, {len(expected)} selected")

    if failed:
        lines.append(f"\nFAILED cases ({len(failed)}):")
        lines.append(f"  {'case':<10}{'behavior':<15}{'behaviorClose':<15}{'close code':<12}ms")
        for o in failed:
            code = "-" if o.close_code is None else str(o.close_code)
            lines.append(
                f"  {o.case:<10}{o.behavior:<15}{o.behavior_close:<15}{code:<12}{o.duration_ms}"
            )
    if missing:
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        lines.append(f"\nMISSING from the report ({len(missing)}): {shown}")
        lines.append("  (the server probably died or hung; see server.log)")
    if extra:
        lines.append(f"\nUNEXPECTED in the report ({len(extra)}): {', '.join(extra[:20])}")
    passed = not failed and not missing and not extra
    return passed, "\n".join(lines)


def markdown_table(outcomes: list[Outcome]) -> str:
    behavior = collections.Counter(o.behavior for o in outcomes)
    close = collections.Counter(o.behavior_close for o in outcomes)
    names = sorted(set(behavior) | set(close), key=lambda b: (b not in GOOD, b))
    rows = ["| behaviour | behavior | behaviorClose |", "|---|---:|---:|"]
    rows += [f"| {n} | {behavior[n]} | {close[n]} |" for n in names]
    rows.append(f"| **total** | {len(outcomes)} | {len(outcomes)} |")
    failed = [o for o in outcomes if not o.ok]
    if failed:
        rows.append("")
        rows.append(
            "Failed: " + ", ".join(f"{o.case} ({o.behavior}/{o.behavior_close})" for o in failed)
        )
    return "\n".join(rows) + "\n"


# -- main --------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Run Autobahn|Testsuite (wstest fuzzingclient) against an echo server.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument(
        "--cases",
        default="quick",
        help='"quick" (337 cases), "full" (517) or comma-separated wstest patterns',
    )
    p.add_argument(
        "--server-cmd",
        default=DEFAULT_SERVER_CMD,
        help="server command template; {port}, {python}, {root} are filled in "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--no-server",
        action="store_true",
        help="start nothing; test the server already listening at --url",
    )
    p.add_argument(
        "--url", default=DEFAULT_URL, help="WebSocket URL template (default: %(default)s)"
    )
    p.add_argument("--port", type=int, default=0, help="port to use (default: a free one)")
    p.add_argument(
        "--agent", default="wirehub", help="agent name in the report (default: %(default)s)"
    )
    p.add_argument(
        "--outdir", type=Path, help="report directory (default: compliance/reports/<agent>-<cases>)"
    )
    p.add_argument("--wstest", type=Path, default=DEFAULT_WSTEST, help="wstest executable")
    p.add_argument("--startup-timeout", type=float, default=30.0, help="seconds (default: 30)")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds for the whole wstest run (default: 600 quick, 2400 otherwise)",
    )
    return p.parse_args(argv)


def fill(template: str, port: int) -> list[str]:
    """Split the template first, then substitute, so paths with spaces survive."""
    values = {"port": str(port), "python": sys.executable, "root": str(ROOT)}
    return [token.format(**values) for token in shlex.split(template)]


def execute(args: argparse.Namespace) -> int:
    name, patterns = parse_selection(args.cases)
    expected = select(patterns)
    if not args.wstest.exists():
        raise RunError(f"{args.wstest} not found; run compliance/install_wstest.sh first")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.agent):
        raise RunError("--agent: letters, digits, '_', '.', '-' only (it names report files)")

    outdir = (args.outdir or REPORTS / f"{args.agent}-{name}").resolve()
    with locked(outdir):
        return run_suite(args, name, patterns, expected, outdir)


def run_suite(
    args: argparse.Namespace, name: str, patterns: list[str], expected: list[str], outdir: Path
) -> int:
    port = args.port or free_port()
    url = args.url.format(port=port)
    prepare_outdir(outdir)
    spec = write_spec(outdir, args.agent, url, patterns)
    server_log, wstest_log = outdir / "server.log", outdir / "wstest.log"
    timeout = args.timeout or (600.0 if name == "quick" else 2400.0)

    server_argv = [] if args.no_server else fill(args.server_cmd, port)
    print(f"agent:    {args.agent}")
    print(f"server:   {shlex.join(server_argv) if server_argv else '(not started: --no-server)'}")
    print(f"url:      {url}")
    print(f"cases:    {args.cases} -> {len(expected)} cases {patterns}")
    print(f"report:   {outdir}")
    sys.stdout.flush()

    started = time.monotonic()
    server_status: int | None = None
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(running(server_argv, server_log)) if server_argv else None
        try:
            wait_for_port(url, server, args.startup_timeout)
        except RunError:
            if server is not None:
                stop(server)
                print(f"--- server.log (tail) ---\n{tail(server_log)}", file=sys.stderr)
            raise
        listening = time.monotonic()
        try:
            run_wstest(args.wstest, spec, wstest_log, timeout)
        finally:
            if server is not None:
                server_status = server.poll()
    finished = time.monotonic()

    try:
        outcomes = read_report(outdir, args.agent)
    except RunError:
        print(f"--- wstest.log (tail) ---\n{tail(wstest_log)}", file=sys.stderr)
        raise
    passed, summary = summarize(outcomes, expected)
    (outdir / "summary.md").write_text(markdown_table(outcomes))

    print()
    print(summary)
    if server_status is not None:
        print(f"\nserver exited during the run with status {server_status}")
        passed = False
    print(f"\nduration: {finished - started:.1f} s (wstest {finished - listening:.1f} s)")
    print(f"HTML report: {outdir / 'index.html'}")
    print(f"per case: {outdir}/{args.agent}_case_<1_2_3>.json; logs: server.log, wstest.log")
    if not passed and server_argv:
        print(f"--- server.log (tail) ---\n{tail(server_log, 20)}")
    print("RESULT:", "PASS" if passed else "FAIL")
    return 0 if passed else 1


def _terminate(signum: int, frame: object) -> None:
    # Turn SIGTERM/SIGHUP into an exception so `finally` blocks stop the server.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    try:
        return execute(args)
    except RunError as exc:
        print(f"compliance: cannot run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("compliance: interrupted", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
