"""Run a handler coroutine as a task, eagerly where Python can.

On Python 3.12+, ``eager_start`` steps the coroutine at once inside its task:
a handler that never waits (an emit through the in-memory broker does not)
finishes right away, in arrival order, and no task is ever scheduled
(DESIGN.md, performance rule 2). On 3.11 the task starts on the next loop
iteration: ``EAGER`` says which, so a peer can hold its next messages until
the task has started (``started_soon``) and handle them in arrival order on
both. Either way the handler runs inside a real task, so
``asyncio.timeout``, ``current_task()`` and cancellation behave as usual.
(An earlier version stepped coroutines by hand without a task; libraries that
need ``current_task()`` — redis-py, ``asyncio.timeout`` — failed under it.)
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["EAGER", "run_eagerly", "started_soon"]

Done = Callable[[Any, BaseException | None], None]

EAGER = sys.version_info >= (3, 12)
"""Whether a task's first step runs at once (3.12+), rather than on the next iteration."""


def run_eagerly(coro: Awaitable[Any], done: Done) -> asyncio.Task[Any] | None:
    """Start ``coro`` (any awaitable: a future is awaited by a small coroutine);
    call ``done(result, error)`` when it ends.

    Returns None when it already finished, else its running task.
    """
    if not isinstance(coro, Coroutine):
        coro = _wait(coro)
    loop = asyncio.get_running_loop()
    if EAGER:
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    else:
        task = loop.create_task(coro)
    if task.done():
        _report(task, done)
        return None
    task.add_done_callback(lambda finished: _report(finished, done))
    return task


def _report(task: asyncio.Task[Any], done: Done) -> None:
    if task.cancelled():
        done(None, asyncio.CancelledError())
        return
    error = task.exception()
    done(None if error is not None else task.result(), error)


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def started_soon(callback: Callable[[], None]) -> None:
    """Call ``callback`` once a task made just now (by ``run_eagerly`` on 3.11) has run
    its first step: the loop runs ready callbacks in the order they were scheduled."""
    asyncio.get_running_loop().call_soon(callback)
