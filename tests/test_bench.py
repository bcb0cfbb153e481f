"""The benchmark harness runs end to end: every peer server and workload, tiny sizes.

Numbers are not judged here (timing thresholds in tests are flaky by nature);
only that every run completes and reports sane values. The real comparison is
``make bench`` (bench/README.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wirehub.client import Reconnect
from wirehub.codes import RETRY_AFTER
from wirehub.loadgen.storm import BACKOFF
from wirehub.loadgen.storm import RETRY_AFTER as STORM_RETRY_AFTER

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_quick_bench_runs_every_peer_and_workload(tmp_path: Path) -> None:
    """`bench/run.py --quick` completes every server x workload cell with positive numbers."""
    out = tmp_path / "quick.json"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads(out.read_text())
    assert {"wirehub", "wirehub_events", "websockets", "socketio"} <= set(report["servers"])
    assert set(report["summary"]["wirehub"]) == set(report["workloads"])
    for server in report["servers"]:
        # Peers without permessage-deflate skip the deflate workload.
        for workload, cell in report["summary"][server].items():
            assert cell["ok"], (server, workload, cell)
            assert cell["ops"] > 0 and cell["wall_s"] > 0, (server, workload, cell)
            if "kib_per_conn" in cell:
                assert 0 <= cell["kib_per_conn"] < 1024, (server, workload, cell)
    assert out.with_suffix(".png").stat().st_size > 0


def test_storm_clients_back_off_like_wirehubs_clients() -> None:
    """The storm's wirehub clients use the Python client's default backoff and hint pattern."""
    policy, mirror = Reconnect(), BACKOFF["wh"]
    assert (mirror.initial, mirror.factor, mirror.maximum) == (
        policy.initial_delay,
        policy.factor,
        policy.max_delay,
    )
    assert mirror.jitter == mirror.first_jitter == policy.jitter
    assert RETRY_AFTER.pattern.encode() == STORM_RETRY_AFTER.pattern


def test_a_port_someone_else_holds_is_never_measured() -> None:
    """A port taken by another process after ``free_port`` chose it: the harness notices
    the listener is not its server (PortTaken), rather than measuring that process."""
    import importlib.util
    import socket

    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = run  # its dataclasses look their module up
    try:
        spec.loader.exec_module(run)
    finally:
        del sys.modules["bench_run"]
    bind = "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1])))"
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-c", bind, str(port)], stderr=subprocess.DEVNULL
        )
        try:
            with pytest.raises(run.PortTaken):
                run.wait_listening(server, port, timeout=30)
        finally:
            server.kill()
            server.wait()
        assert not run.listens(server.pid, port)
    listening = bind + "; s.listen(); time.sleep(60)"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", listening, str(port)])
    try:
        run.wait_listening(server, port, timeout=30)
        assert run.listens(server.pid, port)
    finally:
        server.kill()
        server.wait()
