"""`wirehub bench` against a running server, from another process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.conftest import UNIT, serve
from wirehub import Hub, WebSocket, broadcast

ROOT = Path(__file__).resolve().parent.parent


def contract_hub() -> Hub:
    """The bench contract: /echo, and /fanout subscribers fed by publishers."""
    hub = Hub(events_path=None)
    subscribers: set[WebSocket] = set()

    @hub.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @hub.websocket("/fanout")
    async def fanout(ws: WebSocket) -> None:
        if ws.request.query.get("role", "sub") == "sub":
            subscribers.add(ws)
            await ws.wait_closed()
            subscribers.discard(ws)
            return
        async for message in ws:
            broadcast(subscribers, message)

    return hub


async def _bench(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "wirehub", "bench", url, "--quick", *args]
    return await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=60 * UNIT
    )


async def test_bench_measures_a_server_and_reports_each_workload() -> None:
    """Every requested workload gets a line with its rate; the exit status is 0."""
    async with serve(contract_hub()) as s:
        result = await _bench(f"ws://127.0.0.1:{s.port}", "--workloads", "echo_latency,fanout_1k")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("echo_latency") and "ops/s" in lines[0] and "p50" in lines[0]
    assert lines[1].startswith("fanout_1k") and "ops/s" in lines[1]


async def test_bench_runs_a_reconnect_storm_against_an_event_hub() -> None:
    """reconnect_storm drops every client of a wirehub hub at once: all come back, recovered."""
    sys.path.insert(0, str(ROOT / "bench" / "servers"))
    try:
        from wirehub_events import build  # the harness's own event hub
    finally:
        sys.path.remove(str(ROOT / "bench" / "servers"))
    async with serve(build(compression=False)) as s:
        url = f"ws://127.0.0.1:{s.port}"
        result = await _bench(url, "--workloads", "reconnect_storm", "--dialect", "wh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("reconnect_storm"), result.stdout
    assert "recovered 40, told of a gap 0, unaware 0" in result.stdout, result.stdout


async def test_bench_reports_failures_and_bad_urls() -> None:
    """A workload that cannot run fails with a reason and exit 1; wss:// is refused clearly."""
    async with serve(contract_hub()) as s:
        result = await _bench(f"ws://127.0.0.1:{s.port}", "--workloads", "idle_memory")
        assert result.returncode == 1
        assert "idle_memory" in result.stdout and "--server-pid" in result.stdout
        refused = await _bench(f"wss://127.0.0.1:{s.port}")
        assert refused.returncode == 2 and "ws://host:port" in refused.stderr


async def test_bench_checks_the_contract_first() -> None:
    """A server without the bench endpoints gets one line saying what is missing, exit 1."""
    hub = Hub()

    @hub.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(hub) as s:
        url = f"ws://127.0.0.1:{s.port}"
        no_fanout = await _bench(url, "--workloads", "fanout_1k")
        no_event = await _bench(url, "--workloads", "echo_latency", "--dialect", "wh")
    for result, missing in (
        (no_fanout, "GET /fanout?role=sub&room=probe answered HTTP 404"),
        (no_event, "event 'm' got error 'unknown_event'"),
    ):
        assert result.returncode == 1
        assert result.stdout == "" and "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1 and missing in result.stderr
        assert "bench/" not in result.stderr  # no files a pip user does not have


async def test_bench_unknown_workload_is_a_usage_error() -> None:
    """``--workloads nosuch`` names the known workloads, in one line."""
    result = await _bench("ws://127.0.0.1:9", "--workloads", "echo_latency,nosuch")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown workload nosuch; choose from echo_latency" in result.stderr
