"""``wirehub serve --metrics-port``: one scrape covers every worker of ``--workers 2``."""

from __future__ import annotations

import asyncio
import re

from tests.conftest import http
from tests.hub.test_metrics import parse
from tests.test_cli import START
from tests.test_cli_workers import client_on_each_worker, workers


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
