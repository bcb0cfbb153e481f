"""``SyncClient``: the client for code without an event loop (scripts, threads, REPL).

::

    with SyncClient("ws://127.0.0.1:8000/ws") as client:
        client.on("chat", print)          # runs in the client's thread
        client.join("lobby")
        print(client.call("chat", {"text": "hi"}))

It runs an asyncio ``Client`` on a private event loop in a background
(daemon) thread. Blocking methods submit a coroutine to that loop and wait
for its result, so they are safe to call from any thread except the client's
own. **Handlers run in the client's thread**, one after another: a handler
that blocks delays every later message, and a handler must not call the
blocking methods (that would wait on itself; they raise ``RuntimeError``).
From a handler, use ``client.aio`` — the asyncio ``Client`` — in an
``async def`` handler, e.g. ``await client.aio.emit(...)``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar, overload

from wirehub.client.client import Client
from wirehub.client.events import Handler
from wirehub.client.session import DEFAULT, State, _Default
from wirehub.exceptions import ConnectionClosed

__all__ = ["SyncClient"]

H = TypeVar("H", bound=Handler)
T = TypeVar("T")


class SyncClient:
    """A blocking wirehub client; the options are those of ``Client``.

    Every blocking method raises what its ``Client`` counterpart raises.
    Call ``close()`` (or use ``with``) to stop the thread.
    """

    def __init__(self, url: str, **options: Any) -> None:
        self.aio = Client(url, **options)
        """The asyncio ``Client`` this one drives (use it only from its thread)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def connect(self) -> SyncClient:
        """Start the client's thread, connect and wait for the welcome; return self.

        Raises like ``Client.connect`` (and then stops the thread again).
        """
        if self._thread is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name=f"wirehub-client {self.aio.url}", daemon=True
            )
            thread.start()
            self._loop, self._thread = loop, thread
        try:
            self._run(self.aio.connect())
        except BaseException:
            self._stop()
            raise
        return self

    def close(self) -> None:
        """Close the connection (1000), run the ``disconnect`` callbacks, stop the thread."""
        if self._thread is None:
            return
        try:
            self._run(self.aio.close())
        finally:
            self._stop()

    def wait_closed(self, timeout: float | None = None) -> ConnectionClosed:
        """Block until the client stopped for good; return why. Raises TimeoutError."""
        return self._run(self.aio.wait_closed(), timeout)

    def __enter__(self) -> SyncClient:
        """Connect (unless connected already); see ``connect``."""
        return self.connect() if self.aio.state is State.CLOSED else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close; see ``close``."""
        self.close()

    # -- state -----------------------------------------------------------------

    @property
    def id(self) -> str | None:
        """The peer id of the current connection."""
        return self.aio.id

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this client is in, joined by it or by the server (re-joined after a
        reconnect)."""
        return self.aio.rooms

    @property
    def connected(self) -> bool:
        """Whether the connection is open and welcomed right now."""
        return self.aio.connected

    # -- handlers --------------------------------------------------------------

    @overload
    def on(self, event: str) -> Callable[[H], H]: ...

    @overload
    def on(self, event: str, handler: H) -> H: ...

    def on(self, event: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Register a handler as ``Client.on`` does; it will run in the client's thread."""
        if handler is None:
            return self.aio.on(event)
        return self.aio.on(event, handler)

    def off(self, event: str, handler: Handler | None = None) -> None:
        """Unregister ``handler`` for ``event`` (every handler of it when None)."""
        self.aio.off(event, handler)

    # -- blocking calls ------------------------------------------------------------

    def emit(self, event: str, data: Any = None) -> None:
        """Send an event without waiting for an answer; see ``Client.emit``."""
        self._run(self.aio.emit(event, data))

    def call(
        self, event: str, data: Any = None, *, timeout: float | _Default | None = DEFAULT
    ) -> Any:
        """Send an event and return the data of its ack; see ``Client.call``."""
        return self._run(self.aio.call(event, data, timeout=timeout))

    def join(
        self, room: str, *, history: int = 0, timeout: float | _Default | None = DEFAULT
    ) -> dict[str, Any]:
        """Join ``room`` and return the ack data; see ``Client.join``."""
        return self._run(self.aio.join(room, history=history, timeout=timeout))

    def leave(self, room: str, *, timeout: float | _Default | None = DEFAULT) -> None:
        """Leave ``room``; see ``Client.leave``."""
        self._run(self.aio.leave(room, timeout=timeout))

    def ping(self, *, timeout: float | _Default | None = DEFAULT) -> float:
        """Application ping; return the round-trip time in seconds."""
        return self._run(self.aio.ping(timeout=timeout))

    # -- the thread ------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            coro.close()
            raise ConnectionClosed(1006, "not connected: call connect() first")
        if threading.current_thread() is thread:
            coro.close()
            raise RuntimeError(
                "a SyncClient's blocking methods cannot run in its own thread (in a handler);"
                " use `await client.aio.<method>(...)` in an async handler"
            )
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def _stop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if thread is not threading.current_thread():
            asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def _cancel_all() -> None:
    """Cancel what still runs on the client's loop (async handlers) and let it finish."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()
