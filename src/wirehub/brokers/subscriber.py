"""``Subscriber``: one pub/sub connection to one Redis server.

``RedisBroker`` owns one (or, with Redis Cluster, one per primary) and
supervises it: a Subscriber never reconnects by itself. When anything goes
wrong — the socket drops, a keepalive ``PING`` gets no answer, Redis sends
an error or takes back a subscription (a cluster slot moved) — it closes and
``closed`` says why; the broker then builds new ones and subscribes again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["Subscriber", "SubscriptionLost"]

logger = logging.getLogger("wirehub.broker")


class SubscriptionLost(RedisConnectionError):
    """Redis ended a subscription this node did not give up (e.g. a slot migrated)."""


class Subscriber:
    """Subscribes one connection to channels and hands each message to ``on_message``.

    ``sharded`` uses ``SSUBSCRIBE`` (Redis Cluster shard channels). Every
    ``keepalive`` seconds a ``PING`` goes out; a connection that answered
    nothing since the previous one is declared dead, so a Redis that stops
    answering is noticed instead of leaving this node silently deaf.
    """

    def __init__(
        self,
        connection: AbstractConnection,
        on_message: Callable[[bytes], None],
        *,
        sharded: bool = False,
        keepalive: float = 10.0,
        timeout: float = 5.0,
    ) -> None:
        self.connection = connection
        self.on_message = on_message
        self.keepalive = keepalive
        self.timeout = timeout
        self.sharded = sharded
        self._subscribe = "SSUBSCRIBE" if sharded else "SUBSCRIBE"
        self._unsubscribe = "SUNSUBSCRIBE" if sharded else "UNSUBSCRIBE"
        self.channels: set[str] = set()
        self._leaving: collections.Counter[bytes] = collections.Counter()
        self._waiters: dict[bytes, collections.deque[asyncio.Future[bool]]] = {}
        self._send_lock = asyncio.Lock()
        self._heard = True  # anything read since the last keepalive PING
        self._tasks: list[asyncio.Task[None]] = []
        self.closed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def open(self) -> None:
        """Connect (within ``timeout``) and start reading."""
        try:
            async with asyncio.timeout(self.timeout):  # wait_for may swallow a cancel (3.11)
                await self.connection.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            await self._disconnect()
            raise
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read()), loop.create_task(self._ping())]

    @property
    def is_open(self) -> bool:
        return bool(self._tasks) and not self.closed.done()

    async def subscribe(self, channels: Iterable[str]) -> bool:
        """Subscribe; True once Redis confirmed every channel, False if closed first.

        Raises ``TimeoutError`` when Redis does not confirm within ``timeout``
        (the subscriber is then closed).
        """
        names = [c for c in channels]
        if not names or not self.is_open:
            return False
        loop = asyncio.get_running_loop()
        waiters = []
        for name in names:
            waiter: asyncio.Future[bool] = loop.create_future()
            self._waiters.setdefault(name.encode(), collections.deque()).append(waiter)
            waiters.append(waiter)
        self.channels.update(names)
        await self._send_each(self._subscribe, names)
        try:
            async with asyncio.timeout(self.timeout):
                results = await asyncio.gather(*waiters)
        except TimeoutError as exc:
            self._fail(exc)
            raise
        return all(results)

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        """Stop hearing ``channels`` (not waiting for Redis to confirm)."""
        names = [c for c in channels if c in self.channels]
        if not names or not self.is_open:
            return
        self.channels.difference_update(names)
        self._leaving.update(name.encode() for name in names)
        await self._send_each(self._unsubscribe, names)

    async def close(self) -> None:
        """Stop reading and close the connection; idempotent."""
        self._fail(asyncio.CancelledError("closed"))
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:  # not `await task` under suppress(CancelledError): it would swallow ours
            await asyncio.wait(tasks)
        await self._disconnect()

    # -- internals -------------------------------------------------------------

    async def _send_each(self, command: str, channels: list[str]) -> None:
        if self.sharded:  # shard channels of one command must share a slot: one each
            for channel in channels:
                await self._send(command, channel)
        else:
            await self._send(command, *channels)

    async def _send(self, *args: str) -> None:
        # One command at a time, in call order: a subscribe following an
        # unsubscribe of the same channel must reach Redis after it.
        async with self._send_lock:
            if not self.connection.is_connected or self.closed.done():
                return  # redis-py would silently reconnect; the broker does that
            try:
                await self.connection.send_command(*args, check_health=False)
            except Exception as exc:
                self._fail(exc)

    async def _read(self) -> None:
        try:
            while True:
                reply = await self.connection.read_response(disconnect_on_error=False)
                self._heard = True
                self._handle(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    def _handle(self, reply: Any) -> None:
        if isinstance(reply, Exception):  # an error reply: Redis refused a command
            raise reply
        if not isinstance(reply, list) or not reply:
            return
        kind = reply[0]
        if kind in (b"message", b"smessage"):
            try:
                self.on_message(reply[2])
            except Exception:
                logger.exception("delivering a Redis message failed")
        elif kind in (b"subscribe", b"ssubscribe"):
            waiters = self._waiters.get(reply[1])
            if waiters:
                waiter = waiters.popleft()
                if not waiters:
                    del self._waiters[reply[1]]
                if not waiter.done():
                    waiter.set_result(True)
        elif kind in (b"unsubscribe", b"sunsubscribe"):
            channel = reply[1]
            if self._leaving[channel] > 0:
                self._leaving[channel] -= 1
                if not self._leaving[channel]:
                    del self._leaving[channel]
            elif channel is not None:
                raise SubscriptionLost(f"Redis ended the subscription to {channel!r}")

    async def _ping(self) -> None:
        while not self.closed.done():
            await asyncio.sleep(self.keepalive)
            if not self._heard:
                self._fail(TimeoutError(f"no answer from Redis in {2 * self.keepalive:g}s"))
                return
            self._heard = False
            await self._send("PING")

    def _fail(self, exc: BaseException) -> None:
        if not self.closed.done():
            logger.debug("pub/sub connection closed: %r", exc)
            self.closed.set_result(exc)
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(False)
        self._waiters.clear()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def _disconnect(self) -> None:
        with contextlib.suppress(Exception):
            await self.connection.disconnect(nowait=True)
