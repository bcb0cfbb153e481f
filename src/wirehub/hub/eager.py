"""Run a handler coroutine eagerly: no task unless it really has to wait.

Most event handlers finish without suspending (an emit through the in-memory
broker never waits). Stepping the coroutine right away runs them in arrival
order with no task at all (DESIGN.md, performance rule 2). A coroutine that
does suspend is handed to a task that resumes it exactly as ``asyncio.Task``
would. (Python 3.12's ``eager_start`` does the same; we support 3.11.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["run_eagerly"]

Done = Callable[[Any, BaseException | None], None]


def run_eagerly(coro: Coroutine[Any, Any, Any], done: Done) -> asyncio.Task[None] | None:
    """Step ``coro`` now; call ``done(result, error)`` when it ends.

    Returns None when it finished at once, else the task that finishes it.
    """
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        done(stop.value, None)
        return None
    except Exception as exc:
        done(None, exc)
        return None
    return asyncio.get_running_loop().create_task(_resume(coro, yielded, done))


async def _resume(coro: Coroutine[Any, Any, Any], yielded: Any, done: Done) -> None:
    while True:
        cancelled = False
        if yielded is None:  # a bare yield, as in asyncio.sleep(0)
            await asyncio.sleep(0)
        else:
            # What asyncio.Task does with a yielded future: wait for it, then
            # resume the coroutine, whose own ``await`` reads the result.
            yielded._asyncio_future_blocking = False
            try:
                await asyncio.wait((yielded,))
            except asyncio.CancelledError:
                cancelled = not yielded.cancel()
        try:
            yielded = coro.throw(asyncio.CancelledError()) if cancelled else coro.send(None)
        except StopIteration as stop:
            done(stop.value, None)
            return
        except asyncio.CancelledError as exc:  # server shutdown
            done(None, exc)
            raise
        except Exception as exc:
            done(None, exc)
            return
