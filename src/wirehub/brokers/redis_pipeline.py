"""``Pipeline``: one connection to one Redis server that carries commands in order.

``RedisBroker`` publishes (and reads history) through one Pipeline per Redis
server (per shard on a Cluster). Every command joins one queue; what queued
during a loop iteration goes out as one write, without waiting for the
replies to earlier writes, and replies are read as they come, matched to
commands first in, first out. Redis runs one connection's commands in the
order they arrive, so publications are applied in the order the node issued
them: per-sender order holds as with the memory broker, and a round trip is
shared by everything sent meanwhile.

Commands arrive already packed as RESP (``redis_wire.Commands``): redis-py's
per-argument encoding and per-reply bookkeeping were most of a publication's
cost (bench/README.md, "The Redis publish path"). redis-py
still opens the connection (TLS, AUTH, SELECT, the client name); replies are
parsed by hiredis, which redis-py's hiredis extra brings.

A Pipeline never reconnects. When its connection fails — closed, a write
error, a reply later than ``timeout`` — every command sent and not answered
fails with ``OutcomeUnknown`` (Redis may have applied it), every command not
yet sent with ``NotSent``, later ones are refused at once, and ``on_lost``
tells the broker, which builds a new one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection

__all__ = ["NotSent", "OutcomeUnknown", "Pipeline", "ReplyError"]

logger = logging.getLogger("wirehub.broker")

ReplyError = hiredis.ReplyError
"""An error reply (``-ERR ...``): it is the command's result, not raised."""

_READ = 1 << 16


class NotSent(ConnectionError):
    """The command never reached Redis: it was certainly not applied."""


class OutcomeUnknown(ConnectionError):
    """The command was sent but its reply was lost: Redis may or may not have applied it."""


class Pipeline:
    """Sends packed commands over one connection, in order; ``send`` returns the reply's future.

    ``connection`` is a redis-py connection, not yet connected; ``timeout``
    (seconds) bounds the wait for each reply from the moment its command was
    queued; ``on_lost(error)`` is called once if the connection fails.
    """

    def __init__(
        self,
        connection: AbstractConnection,
        *,
        timeout: float,
        on_lost: Callable[[BaseException], None],
    ) -> None:
        self.connection = connection
        self.timeout = timeout
        self.on_lost = on_lost
        self.failure: BaseException | None = None  # why it stopped, once it did
        self._loop = asyncio.get_running_loop()
        self._writer: asyncio.StreamWriter | None = None
        self._unsent: list[bytes] = []  # queued this loop iteration, written by _flush
        self._unsent_futures: list[asyncio.Future[Any]] = []
        self._pending: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._reader: asyncio.Task[None] | None = None
        self._wait: asyncio.Timeout | None = None  # the reader's current read deadline
        self._retired = False

    async def open(self) -> None:
        """Connect (within ``timeout``, handshake included) and start reading replies."""
        try:
            async with asyncio.timeout(self.timeout):  # wait_for may swallow a cancel (3.11)
                await self.connection.connect()  # type: ignore[no-untyped-call]
            reader, self._writer = _streams(self.connection)
        except BaseException:
            await self._disconnect()
            raise
        self._reader = self._loop.create_task(self._read(reader))

    @property
    def usable(self) -> bool:
        """Open, not failed and not retired: new commands may be sent."""
        return self._writer is not None and self.failure is None and not self._retired

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Queue ``command`` (packed RESP); the future gets its reply (a ``ReplyError`` for an
        error reply), or ``NotSent``/``OutcomeUnknown`` if the connection fails first."""
        future: asyncio.Future[Any] = self._loop.create_future()
        if not self.usable:
            reason = self.failure or "the pipeline is closed"
            future.set_exception(NotSent(f"not connected to Redis: {reason}"))
            return future
        if not self._unsent:
            self._loop.call_soon(self._flush)
        self._unsent.append(command)
        self._unsent_futures.append(future)
        return future

    def retire(self) -> None:
        """Take no more commands; close once every reply in flight has arrived."""
        self._retired = True
        if not self._pending and not self._unsent and self._reader is not None:
            self._reader.cancel()

    async def close(self) -> None:
        """Close now: commands not answered fail (``OutcomeUnknown``/``NotSent``)."""
        self._retired = True
        self._fail(NotSent("the pipeline was closed"), report=False)
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.wait([reader])  # not `await reader`: that would swallow our own cancel
        await self._disconnect()

    # -- internals -------------------------------------------------------------

    def _flush(self) -> None:
        """Write what was queued this loop iteration, as one write."""
        if not self._unsent or self.failure is not None or self._writer is None:
            return
        deadline = self._loop.time() + self.timeout
        self._pending.extend((future, deadline) for future in self._unsent_futures)
        data = b"".join(self._unsent)
        self._unsent, self._unsent_futures = [], []
        try:
            self._writer.write(data)
        except Exception as exc:  # the transport is gone: nothing more will be answered
            self._fail(exc)
            return
        if self._wait is not None and self._wait.when() is None:
            self._wait.reschedule(self._pending[0][1])

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader()
        pending = self._pending
        try:
            while True:
                reply = parser.gets()
                while reply is not False:
                    if not pending:
                        raise ConnectionError(f"Redis sent a reply nobody asked for: {reply!r}")
                    future, _ = pending.popleft()
                    if not future.done():
                        future.set_result(reply)
                    reply = parser.gets()
                if self._retired and not pending and not self._unsent:
                    return
                async with asyncio.timeout_at(pending[0][1] if pending else None) as self._wait:
                    data = await reader.read(_READ)
                self._wait = None
                if not data:
                    raise ConnectionError("Redis closed the connection")
                parser.feed(data)
        except TimeoutError:
            self._fail(TimeoutError(f"no reply from Redis within {self.timeout:g}s"))
        except Exception as exc:
            self._fail(exc)
        finally:
            await self._disconnect()

    def _fail(self, exc: BaseException, *, report: bool = True) -> None:
        """Fail every command not answered; refuse new ones; tell the broker once."""
        first = self.failure is None
        if first:
            self.failure = exc
        described = f"{type(exc).__name__}: {exc}".rstrip(": ")
        while self._pending:
            future, _ = self._pending.popleft()
            if not future.done():
                future.set_exception(OutcomeUnknown(f"no reply from Redis: {described}"))
        for future in self._unsent_futures:
            if not future.done():
                future.set_exception(NotSent(f"not sent to Redis: {described}"))
        self._unsent, self._unsent_futures = [], []
        if first and report and not self._retired:
            logger.debug("publish connection failed: %s", described)
            self.on_lost(exc)

    async def _disconnect(self) -> None:
        self._writer = None
        with contextlib.suppress(Exception):
            await self.connection.disconnect(nowait=True)


def _streams(
    connection: AbstractConnection,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The connected socket's streams. redis-py keeps them private: a change there fails
    every Redis test at once, here."""
    reader = getattr(connection, "_reader", None)
    writer = getattr(connection, "_writer", None)
    if not isinstance(reader, asyncio.StreamReader) or not isinstance(writer, asyncio.StreamWriter):
        raise RuntimeError("this redis-py version hides its connection's streams differently")
    return reader, writer
