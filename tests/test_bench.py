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
