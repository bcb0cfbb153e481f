"""Startup and shutdown hooks, and the background tasks of a running hub.

``@hub.on_startup`` and ``@hub.on_shutdown`` run wherever the hub runs: in
``hub.run()`` and ``wirehub serve``, in *every* worker process after the fork
under ``--workers N`` (never in the supervisor), and under an ASGI server's
lifespan protocol. ``hub.start_background_task(coro)`` runs a coroutine for
the life of the hub: tracked, cancelled at shutdown, its error logged.

Order: startup hooks run after the broker connected (so they may emit), in
registration order; a failing startup hook stops the start (the server does
not accept clients, the error propagates). At shutdown, background tasks are
cancelled and awaited first, then shutdown hooks run (in registration order,
each error logged, none stopping the others), then the broker closes.
(Starlette's ``on_startup``/``on_shutdown`` and python-socketio's
``start_background_task`` are the models.)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Collection, Coroutine
from typing import Any, TypeVar

from wirehub.exceptions import ConfigError

__all__ = ["Hook", "Lifecycle", "finish"]

logger = logging.getLogger("wirehub.hub")

Hook = Callable[[], Any]  # -> None or Awaitable[None]
H = TypeVar("H", bound=Hook)

CANCEL_GRACE = 5.0
"""Seconds a cancelled background task gets to finish its cleanup at shutdown."""


class Lifecycle:
    """The hooks and background tasks of one hub (``hub.lifecycle``)."""

    def __init__(self) -> None:
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.running = False

    def on_startup(self, hook: H) -> H:
        """Register ``hook()`` (sync or async) to run when the hub starts."""
        self.startup_hooks.append(_checked(hook))
        return hook

    def on_shutdown(self, hook: H) -> H:
        """Register ``hook()`` (sync or async) to run when the hub stops."""
        self.shutdown_hooks.append(_checked(hook))
        return hook

    def start_background_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task until it ends or the hub stops (then it is cancelled).

        Call it from a startup hook or a handler: in the running hub's event
        loop. Raises ``ConfigError`` when the hub is not running (at import
        time, or in the ``--workers`` supervisor, which serves nobody): the
        coroutine is closed, not silently dropped later. An exception the
        task raises is logged with its traceback.
        """
        if not inspect.iscoroutine(coro):
            raise TypeError(_not_a_coroutine(coro))
        if not self.running:
            coro.close()
            raise ConfigError(
                "the hub is not running here: start background tasks from an "
                "@hub.on_startup hook (it runs in every worker, after the fork)"
            )
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    async def startup(self) -> None:
        """Run the startup hooks; on a failure, cancel what they started and re-raise."""
        self.running = True
        try:
            for hook in self.startup_hooks:
                await _call(hook)
        except BaseException:
            logger.exception("startup hook failed: the hub does not start")
            await self._cancel_tasks()
            self.running = False
            raise

    async def shutdown(self) -> None:
        """Cancel the background tasks and wait for them, then run the shutdown hooks."""
        if not self.running:
            return
        await self._cancel_tasks()
        self.running = False
        for hook in self.shutdown_hooks:
            try:
                await _call(hook)
            except Exception:
                logger.exception("shutdown hook %s failed", _name(hook))

    async def _cancel_tasks(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=CANCEL_GRACE)
        for task in pending:
            logger.warning(
                "background task %s did not end within %ss of being cancelled",
                task.get_name(),
                CANCEL_GRACE,
            )

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.error("background task %s failed", task.get_name(), exc_info=error)


async def finish(running: Callable[[], Collection[asyncio.Task[Any]]], timeout: float) -> None:
    """Let the tasks ``running()`` returns end within ``timeout`` seconds, then cancel the
    rest and give them ``CANCEL_GRACE`` to clean up.

    A host's graceful shutdown calls it for the user code running for clients
    (handlers, ``disconnect`` handlers, plain endpoints) once the clients are
    closed: ``running`` is asked again after each wait, since a task ending (a
    peer's last handler) may start another (its ``disconnect`` handler).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    me = asyncio.current_task()  # a shutdown awaited from user code must not wait for itself
    while tasks := [t for t in running() if not t.done() and t is not me]:
        if loop.time() >= deadline:
            break
        await asyncio.wait(tasks, timeout=deadline - loop.time())
    late = [t for t in running() if not t.done() and t is not me]
    if not late:
        return
    logger.warning("%d handlers still ran at the shutdown deadline; cancelling them", len(late))
    for task in late:
        task.cancel()
    _, stuck = await asyncio.wait(late, timeout=CANCEL_GRACE)
    if stuck:
        logger.warning(
            "%d handlers did not end within %ss of being cancelled", len(stuck), CANCEL_GRACE
        )


def _checked(hook: H) -> H:
    if not callable(hook):
        raise ConfigError(f"a lifecycle hook is a function, not {type(hook).__name__}")
    return hook


async def _call(hook: Hook) -> None:
    result = hook()
    if inspect.isawaitable(result):
        await result


def _name(hook: Hook) -> str:
    return getattr(hook, "__qualname__", repr(hook))


def _not_a_coroutine(value: object) -> str:
    """What to do instead, for Flask-SocketIO's habit of passing the function itself."""
    if inspect.iscoroutinefunction(value):
        name = getattr(value, "__name__", "task")
        return f"start_background_task takes a coroutine: call it, start_background_task({name}())"
    if callable(value):
        return (
            "start_background_task takes a coroutine, not a plain function: make it "
            "`async def` (with `await asyncio.sleep()`), or run blocking code with "
            "`await asyncio.to_thread(func)` inside one"
        )
    return f"start_background_task takes a coroutine, not {type(value).__name__}"
