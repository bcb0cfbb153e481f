"""Lifecycle under ``wirehub serve --workers 2 --redis``: producers run after the fork."""

from __future__ import annotations

import asyncio
import signal

from tests.conftest import UNIT
from tests.frameworks.hosts import client_on_each_worker
from tests.test_cli import START
from tests.test_cli_workers import workers


async def test_dashboard_producer_delivers_under_two_workers(redis_url: str, prefix: str) -> None:
    """examples/dashboard: one elected worker produces; clients of both workers get it."""
    app = "examples/dashboard/app.py:hub"
    async with workers(redis_url, prefix, app=app) as (_, url, seen):
        by_worker = await client_on_each_worker(url, "config", "pid")
        seen.update(by_worker)
        async with asyncio.timeout(10 * UNIT):
            producers: set[int] = set()
            for client in by_worker.values():
                samples: asyncio.Queue[dict[str, float]] = asyncio.Queue()
                client.on("sample", samples.put_nowait)
                await client.join("metrics")
                for _ in range(3):
                    producers.add(int((await samples.get())["pid"]))
        assert len(producers) == 1 and producers <= set(by_worker), "only the leader produces"
        for client in by_worker.values():
            await client.close()


async def test_thread_started_at_import_fails_loudly(redis_url: str, prefix: str) -> None:
    """A producer thread started at import under --workers: an error at startup, not silence."""
    app = "tests/apps/thread_producer.py:hub"
    async with workers(redis_url, prefix, app=app) as (process, _, _):
        assert process.stderr is not None
        stderr = ""
        expected = (
            "thread(s) started before the workers were forked (metrics-producer)",
            "ConfigError: the hub is not running in this process",
        )
        async with asyncio.timeout(START):
            while not all(text in stderr for text in expected):
                stderr += (await process.stderr.readline()).decode()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), START) == 0
