"""``wirehub serve`` for operators: metrics of every worker in one scrape, JSON logs."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import http
from tests.hub.test_metrics import parse
from tests.hub.wire import WireClient
from tests.test_cli import START, served_url, wirehub_process
from tests.test_cli_workers import client_on_each_worker, workers
from wirehub.cli import main


async def test_one_scrape_covers_both_workers(redis_url: str, prefix: str) -> None:
    """A scrape of the metrics port has each worker's samples, labelled, and counts both peers."""
    async with workers(redis_url, prefix, "--metrics-port", "0") as (process, url, seen):
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), START)).decode()
        match = re.fullmatch(r"metrics on http://127\.0\.0\.1:(\d+)/metrics\n", line)
        assert match, line
        clients = await client_on_each_worker(url, seen)
        try:
            response = await http(
                int(match.group(1)), b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            )
            assert response.status == 200
            samples = parse(response.body.decode())

            def by_worker(metric: str, **match: str) -> dict[str, float]:
                return {
                    dict(labels)["worker"]: value
                    for (name, labels), value in samples.items()
                    if name == metric and match.items() <= dict(labels).items()
                }

            assert by_worker("wirehub_worker_up") == {"0": 1, "1": 1}
            assert by_worker("wirehub_connections", transport="websocket") == {"0": 1, "1": 1}
            calls = by_worker("wirehub_handler_seconds_count", event="whoami")
            assert set(calls) == {"0", "1"} and min(calls.values()) >= 1
            assert set(by_worker("process_resident_memory_bytes")) == {"0", "1"}
            app_port = int(url.rsplit(":", 1)[1].split("/")[0])
            response = await http(app_port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert response.status == 404  # not on the application's port
        finally:
            for client in clients.values():
                await client.close()


async def test_serve_logs_json_lines_with_peer_client_and_access_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--log-format json`: every stderr line is JSON; handshakes and a failing handler say who.
    (With `--admin`, the admin page is served.)"""
    monkeypatch.setenv("WIREHUB_ADMIN_KEY", "k" * 16)
    serving = wirehub_process(
        "serve", "tests/apps/ops.py:hub", "--port", "0", "--log-format", "json", "--admin"
    )
    async with serving as process:
        url = await served_url(process)
        port = int(url.rsplit(":", 1)[1])
        async with await WireClient.open(url.replace("http", "ws") + "/ws?token=secret") as client:
            reply = await client.call("fail", {})
            assert reply["code"] == "internal_error"
        refused = await http(
            port, b"GET /nowhere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
        )
        assert refused.status == 404
        page = await http(port, b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert page.status == 200
        process.terminate()
        _, stderr = await process.communicate()
    entries: list[dict[str, Any]] = [json.loads(line) for line in stderr.decode().splitlines()]
    access = [e for e in entries if e["logger"] == "wirehub.access"]
    assert [(e["status"], e["path"]) for e in access] == [(101, "/ws"), (404, "/nowhere")]
    assert all(e["client"] == "127.0.0.1" and e["duration_ms"] >= 0 for e in access)
    assert "secret" not in stderr.decode()  # the query (a token) is never logged
    [failed] = [e for e in entries if e["message"] == "handler for event 'fail' failed"]
    assert failed["peer"] == client.id and failed["client"] == "127.0.0.1"
    assert failed["event"] == "fail" and "RuntimeError" in failed["exception"]


def test_admin_without_a_key_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--admin` without WIREHUB_ADMIN_KEY (or with a short one) stops before serving."""
    monkeypatch.delenv("WIREHUB_ADMIN_KEY", raising=False)
    result = CliRunner().invoke(main, ["serve", "tests/apps/ops.py:hub", "--admin"])
    assert result.exit_code == 2 and "WIREHUB_ADMIN_KEY" in result.output
    monkeypatch.setenv("WIREHUB_ADMIN_KEY", "short")
    result = CliRunner().invoke(main, ["serve", "tests/apps/ops.py:hub", "--admin"])
    assert result.exit_code == 2 and "16 characters" in result.output
