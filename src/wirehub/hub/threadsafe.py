"""Running a coroutine on the hub's loop from any thread, for ``Hub.emit_threadsafe``.

Like ``asyncio.run_coroutine_threadsafe``, with one guard: the future's
``result()``, called on the loop's own thread before the coroutine finished,
raises ``ConfigError`` instead of blocking the loop (and every client) for
good. That is what a sync handler does when it copies the ``.result()`` of a
Flask or Django view.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from wirehub.exceptions import ConfigError

__all__ = ["LoopFuture", "submit"]

T = TypeVar("T")


class LoopFuture(concurrent.futures.Future[T]):
    """A ``concurrent.futures.Future`` whose ``result()`` refuses to block the loop's thread."""

    def __init__(self, loop_thread: int | None) -> None:
        super().__init__()
        self._loop_thread = loop_thread

    def result(self, timeout: float | None = None) -> T:
        if not self.done() and threading.get_ident() == self._loop_thread:
            raise ConfigError(
                "waiting for emit_threadsafe(...).result() on the event loop's own thread"
                " would block every client for good: in a handler, make it async and"
                " await hub.to(room).emit(...); or drop the .result()"
            )
        return super().result(timeout)


def submit(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> LoopFuture[T]:
    """Schedule ``coro`` on ``loop`` from any thread; its outcome settles the returned future."""
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    future: LoopFuture[T] = LoopFuture(threading.get_ident() if here is loop else None)

    def start() -> None:
        if not future.set_running_or_notify_cancel():
            coro.close()
            return
        task = loop.create_task(coro)
        task.add_done_callback(lambda done: _settle(future, done))

    loop.call_soon_threadsafe(start)
    return future


def _settle(future: LoopFuture[T], task: asyncio.Task[T]) -> None:
    if task.cancelled():
        future.set_exception(concurrent.futures.CancelledError())
    elif (error := task.exception()) is not None:
        future.set_exception(error)
    else:
        future.set_result(task.result())
