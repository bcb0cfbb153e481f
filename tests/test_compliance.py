"""Autobahn|Testsuite conformance of the wirehub echo server (see compliance/README.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPLIANCE = ROOT / "compliance"

INSTALL_TIMEOUT = 600.0  # fresh install builds wsaccel/autobahn from sdist (~45 s)
RUN_TIMEOUT = 900.0  # quick selection takes ~100 s on 2 cores; run.py stops wstest at 600 s


def run(argv: list[str], timeout: float) -> tuple[int, str]:
    """Run argv from the repo root; on timeout SIGTERM it first so it can stop its server."""
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        return -1, f"TIMED OUT after {timeout:g} s\n{output}"
    return proc.returncode, output


@pytest.mark.timeout(INSTALL_TIMEOUT + RUN_TIMEOUT + 120)
def test_autobahn_quick_selection_passes() -> None:
    """The echo example passes every Autobahn case outside 12.2+ and 13.2+ (337 cases)."""
    status, output = run(["bash", str(COMPLIANCE / "install_wstest.sh")], INSTALL_TIMEOUT)
    assert status == 0, f"compliance/install_wstest.sh failed ({status}):\n{output}"

    argv = [sys.executable, str(COMPLIANCE / "run.py"), "--cases", "quick"]
    status, output = run(argv, RUN_TIMEOUT)
    assert status == 0, f"{' '.join(argv[1:])} failed ({status}):\n{output}"
