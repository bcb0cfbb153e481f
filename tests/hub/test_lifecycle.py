"""Startup and shutdown hooks and background tasks, on the native server."""

from __future__ import annotations

import asyncio
import logging

import pytest

import wirehub
from tests.conftest import UNIT, serve
from wirehub import ConfigError, Hub


async def test_hooks_run_in_order_around_serving() -> None:
    """Startup hooks (sync and async) run before clients are served, shutdown hooks after."""
    hub = Hub()
    calls: list[str] = []

    @hub.on_startup
    def first() -> None:
        calls.append("startup sync")

    @hub.on_startup
    async def second() -> None:
        await asyncio.sleep(0)
        calls.append("startup async")

    @hub.on_shutdown
    async def bye() -> None:
        calls.append("shutdown")

    async with serve(hub):
        assert calls == ["startup sync", "startup async"]
    assert calls == ["startup sync", "startup async", "shutdown"]


async def test_background_task_emits_to_clients_and_is_cancelled() -> None:
    """A producer started by a startup hook delivers to a client, and is cancelled at stop."""
    hub = Hub()
    cancelled = asyncio.Event()

    async def produce() -> None:
        try:
            tick = 0
            while True:
                tick += 1
                await hub.to("metrics").emit("tick", tick)
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @hub.on_startup
    def start() -> None:
        hub.start_background_task(produce())

    async with serve(hub) as s, wirehub.connect(s.ws("/ws")) as client:
        got: asyncio.Queue[int] = asyncio.Queue()
        client.on("tick", got.put_nowait)
        await client.join("metrics")
        assert await asyncio.wait_for(got.get(), UNIT) > 0
        assert len(hub.lifecycle.tasks) == 1
    assert cancelled.is_set()
    assert not hub.lifecycle.tasks


async def test_background_task_error_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A background task that raises is logged with its traceback, and the hub keeps serving."""
    hub = Hub()
    failed = asyncio.Event()

    async def broken() -> None:
        failed.set()
        raise RuntimeError("producer broke")

    async with serve(hub):
        with caplog.at_level(logging.ERROR, logger="wirehub.hub"):
            hub.start_background_task(broken())
            await asyncio.wait_for(failed.wait(), UNIT)
            for _ in range(3):
                await asyncio.sleep(0)
    assert any("producer broke" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_failing_startup_hook_stops_the_start() -> None:
    """A startup hook that raises makes the start fail and leaves the hub stopped."""
    hub = Hub()

    @hub.on_startup
    async def broken() -> None:
        raise RuntimeError("no database")

    with pytest.raises(RuntimeError, match="no database"):
        await hub.start()
    assert hub._loop is None
    with pytest.raises(ConfigError):
        hub.emit_threadsafe("x")


async def test_shutdown_hook_error_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A shutdown hook that raises is logged; the hooks after it still run."""
    hub = Hub()
    ran: list[str] = []

    @hub.on_shutdown
    def broken() -> None:
        raise RuntimeError("boom")

    @hub.on_shutdown
    def after() -> None:
        ran.append("after")

    await hub.start()
    with caplog.at_level(logging.ERROR, logger="wirehub.hub"):
        await hub.stop()
    assert ran == ["after"]
    assert "broken" in caplog.text


def test_background_task_outside_a_running_hub_fails_loudly() -> None:
    """start_background_task before the hub runs raises ConfigError (and closes the coroutine)."""
    hub = Hub()

    async def produce() -> None: ...

    coro = produce()
    with pytest.raises(ConfigError, match="on_startup"):
        hub.start_background_task(coro)
    assert coro.cr_frame is None  # closed: no "never awaited" warning
    with pytest.raises(TypeError, match=r"call it, start_background_task\(produce\(\)\)"):
        hub.start_background_task(produce)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a plain function: make it `async def`"):
        hub.start_background_task(print)  # type: ignore[arg-type]
