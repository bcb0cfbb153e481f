"""``Relay``: serving a fallback session's requests on a node that does not own it.

A fallback session lives in one process (a *node*: one worker of one
machine), and its id starts with that node's name. A poll or POST that a load
balancer sends to another node is carried to the owner through the broker,
on the owner's relay channel — a room name no client can join (it starts
with a control character) — and the owner serves it as if it had come in
itself, publishing the response back on the asking node's channel in
numbered replies (a stream is many). So no sticky sessions are needed.

Phoenix's LongPoll transport routes the same way (its session token names
the node and a private PubSub topic); Centrifugo's emulation endpoint
forwards client commands to the owner node through its broker's survey.

The owner answers every request at once, with its first records or an empty
"accepted" reply, so a node that is gone (a restart: the id names a node no
longer there) is noticed within ``Timeouts.relay``: the client is told 410
and opens a new session, recovering its rooms. Replies lost or reordered on
the way end the response early; the client's next request acknowledges what
it really got, so nothing is lost or doubled.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import secrets
from typing import Any, Protocol

import msgspec

from wirehub.brokers.base import Publication
from wirehub.brokers.memory import MemoryBroker
from wirehub.exceptions import Unavailable
from wirehub.hub.http_transport import Receiver
from wirehub.hub.node import Node

__all__ = ["CHANNEL_PREFIX", "Owner", "Relay"]

logger = logging.getLogger("wirehub.hub")

CHANNEL_PREFIX = "\x00relay:"
"""Relay channels are rooms with this prefix: room names may not hold control characters."""

ACCEPTED = 102  # a reply's status: the owner has the request and answers later


class _Envelope(msgspec.Struct, omit_defaults=True):
    """The header of a relay message (its ``Publication.body``; data travels as ``binary``)."""

    op: str  # "receive" | "send" (requests) | "reply"
    ref: int  # the asking node's number for the request
    node: str = ""  # requests: the asking node
    session: str = ""
    key: str = ""
    count: int = 0  # the request's ack (receive) or seq (send)
    stream: bool = False
    status: int = 0  # replies: an HTTP status, or ACCEPTED
    n: int = 0  # replies: their order within the request, from 0
    end: bool = False  # replies: the last one


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Envelope).decode


class Owner(Protocol):
    """Serves the requests for sessions of this node (``Fallback``)."""

    def receive_here(self, sid: str, key: str, ack: int, receiver: Receiver) -> int: ...

    def send_here(
        self, sid: str, key: str, seq: int, body: bytes
    ) -> tuple[int, asyncio.Future[None] | None]: ...


class Relay:
    """Carries fallback requests to the node owning their session, and the answers back."""

    def __init__(self, node: Node, owner: Owner) -> None:
        self.node = node  # its broker, channels, stats and timeouts
        self.owner = owner
        self.name = ""  # this process's name in session ids; set by start(), after a fork
        self._calls: dict[int, _Call] = {}  # requests this node relayed, by ref
        self._refs = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def shared(self) -> bool:
        """Whether other nodes can exist (the memory broker has this node only)."""
        return not isinstance(self.node.broker, MemoryBroker)

    async def start(self) -> None:
        if not self.name:
            self.name = secrets.token_urlsafe(6)
        channel = CHANNEL_PREFIX + self.name
        if channel not in self.node.channels:
            self.node.channels[channel] = self._received
            with contextlib.suppress(Unavailable):  # counted: subscribed once Redis is back
                await self.node.broker.subscribe(channel)

    def shutdown(self) -> None:
        """End the responses waiting on other nodes; their clients will ask again."""
        for ref in list(self._calls):
            self._finish(ref)

    # -- asking (this node got a request for another node's session) ---------------------

    async def receive(self, sid: str, key: str, ack: int, receiver: Receiver) -> int:
        """Relay a receive request; the status, and the records go to ``receiver``."""
        request = _Envelope("receive", 0, session=sid, key=key, count=ack, stream=receiver.stream)
        return await self._ask(request, None, receiver)

    async def send(self, sid: str, key: str, seq: int, body: bytes) -> int:
        """Relay a POST's body; the owner's status once it processed the messages."""
        request = _Envelope("send", 0, session=sid, key=key, count=seq)
        call_status = await self._ask(request, body, None)
        if call_status != ACCEPTED:
            return call_status
        return await self._calls_final(request.ref)

    async def _ask(self, request: _Envelope, body: bytes | None, receiver: Receiver | None) -> int:
        ref = request.ref = next(self._refs)
        request.node = self.name
        call = self._calls[ref] = _Call(receiver)
        self.node.stats["fallback_relayed"] += 1
        owner = request.session.partition(".")[0]
        channel = CHANNEL_PREFIX + owner
        publication = Publication(_encode(request), body, room=channel, volatile=True)
        try:
            await self.node.broker.publish(publication)
            async with asyncio.timeout(self.node.timeouts.relay):
                status = await asyncio.shield(call.first)
        except TimeoutError:
            logger.info("fallback session %s: its node does not answer", request.session)
            status = 410
        except Exception as exc:
            logger.warning("cannot relay a fallback request: %s", exc)
            status = 503
        if status not in (200, ACCEPTED):
            self._calls.pop(ref, None)
        elif ref in self._calls:  # more replies to come
            call.deadline(self._later(ref))
        return status

    async def _calls_final(self, ref: int) -> int:
        call = self._calls.get(ref)
        if call is None:
            return 503
        return await call.final

    def _later(self, ref: int) -> asyncio.TimerHandle:
        """The owner's next reply is due within a poll plus the relay's timeout."""
        delay = self.node.timeouts.poll + self.node.timeouts.relay
        return asyncio.get_running_loop().call_later(delay, self._finish, ref)

    def _finish(self, ref: int, status: int = 503) -> None:
        call = self._calls.pop(ref, None)
        if call is not None:
            call.finish(status)

    def _replied(self, reply: _Envelope, chunk: bytes | None) -> None:
        call = self._calls.get(reply.ref)
        if call is None:
            return  # answered too late, or ended here already
        if reply.n != call.next:
            logger.info("fallback relay: reply %d of %d lost; ending it", call.next, reply.ref)
            self._finish(reply.ref)
            return
        call.next += 1
        if not call.first.done():
            call.first.set_result(reply.status)
        if chunk and call.receiver is not None:
            call.receiver.write(chunk)
        if reply.end:
            self._finish(reply.ref, reply.status)
        else:
            call.deadline(self._later(reply.ref))

    # -- owning (another node relayed a request for a session of this node) -------------

    def _received(self, publication: Publication) -> None:
        try:
            message = _decode(publication.body)
        except msgspec.DecodeError as exc:
            logger.warning("fallback relay: undecodable message: %s", exc)
            return
        if message.op == "reply":
            self._replied(message, publication.binary)
        elif message.op == "receive":
            replies = _Replies(self, message.node, message.ref, message.stream)
            sid, key, ack = message.session, message.key, message.count
            replies.answered(self.owner.receive_here(sid, key, ack, replies))
        elif message.op == "send":
            replies = _Replies(self, message.node, message.ref, False)
            body = publication.binary or b""
            status, waiter = self.owner.send_here(message.session, message.key, message.count, body)
            if waiter is None:
                replies.put(status, None, end=True)
            else:
                replies.put(ACCEPTED, None, end=False)
                self._track(self._after(waiter, replies, status))

    async def _after(self, waiter: asyncio.Future[None], replies: _Replies, status: int) -> None:
        await waiter
        replies.put(status, None, end=True)

    def _track(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, node: str, reply: _Envelope, chunk: bytes | None) -> None:
        publication = Publication(_encode(reply), chunk, room=CHANNEL_PREFIX + node, volatile=True)
        await self.node.broker.publish(publication)


class _Call:
    """A request this node relayed, waiting for the owner's replies."""

    __slots__ = ("final", "first", "next", "receiver", "timer")

    def __init__(self, receiver: Receiver | None) -> None:
        loop = asyncio.get_running_loop()
        self.receiver = receiver
        self.first: asyncio.Future[int] = loop.create_future()
        self.final: asyncio.Future[int] = loop.create_future()
        self.next = 0
        self.timer: asyncio.TimerHandle | None = None

    def deadline(self, timer: asyncio.TimerHandle) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = timer

    def finish(self, status: int) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.first.done():
            self.first.set_result(status)
        if not self.final.done():
            self.final.set_result(status)
        if self.receiver is not None:
            self.receiver.end()


class _Replies:
    """The owner's side of a relayed request: a ``Receiver`` whose writes are published.

    Replies go out one at a time, in order (two publishes in flight could
    overtake each other on different connections to the broker); a long-poll's
    records and its end travel in one reply.
    """

    def __init__(self, relay: Relay, node: str, ref: int, stream: bool) -> None:
        self.relay = relay
        self.node = node
        self.ref = ref
        self.stream = stream
        self._n = 0
        self._held: bytes = b""  # a long-poll's records, sent with its end
        self._queue: collections.deque[tuple[_Envelope, bytes | None]] = collections.deque()
        self._sending = False
        self._ended = False

    def answered(self, status: int) -> None:
        """``receive_here`` returned: refuse, or say the request is taken."""
        if status != 200:
            self.put(status, None, end=True)
        elif self._n == 0 and not self._ended:
            self.put(200, None, end=False)  # nothing yet: let the asker know we are here

    def write(self, chunk: bytes) -> None:
        if self.stream:
            self.put(200, chunk, end=False)
        else:
            self._held += chunk

    def end(self) -> None:
        self._ended = True
        self.put(200, self._held or None, end=True)
        self._held = b""

    def put(self, status: int, chunk: bytes | None, *, end: bool) -> None:
        reply = _Envelope("reply", self.ref, status=status, n=self._n, end=end)
        self._n += 1
        self._queue.append((reply, chunk))
        if not self._sending:
            self._sending = True
            self.relay._track(self._pump())

    async def _pump(self) -> None:
        try:
            while self._queue:
                reply, chunk = self._queue.popleft()
                await self.relay._publish(self.node, reply, chunk)
        except Exception as exc:
            # The asker times out and its client asks again: nothing acknowledged is lost.
            logger.warning("fallback relay: cannot answer node %s: %s", self.node, exc)
            self._queue.clear()
        finally:
            self._sending = False
