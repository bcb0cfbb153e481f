"""``RedisBroker``: the backplane that lets many processes and machines serve one hub.

Every node publishes to Redis and hears back what it subscribed to, its own
publications included, so all nodes see a room's publications in one order:
the order of the offsets the publish script assigned. See
``redis_wire.py`` for the names, the envelope and the scripts, and
docs/scaling.md for what is and is not guaranteed across nodes.

Nothing half-succeeds silently. While Redis cannot take a publication,
``publish`` raises ``wirehub.exceptions.Unavailable`` (retryable) and
delivers nothing: a room event is never delivered without its position. A
publish whose reply timed out raises too, and is not delivered here: if
Redis applied it, this node's own subscription delivers it, with its
position. Subscribing and reading history raise the same way. The broker
reconnects with exponential backoff, subscribes again to every room it
needs, tells its listener (``resubscribed()``: the hub then fills what it
missed from history, or tells its clients of a gap), and says so in
``health()``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import logging
import random
import secrets
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from wirehub.brokers.base import BrokerListener, History, Publication
from wirehub.brokers.redis_wire import (
    Commands,
    EnvelopeError,
    all_channel,
    channel_of,
    decode,
    parse_history,
    parse_position,
    peer_channel,
    room_channel,
)
from wirehub.exceptions import ConfigError, Unavailable
from wirehub.protocol.messages import Position

try:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.connection import AbstractConnection
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised by a test with redis hidden
    raise ImportError("RedisBroker needs the redis package: pip install 'wirehub[redis]'") from exc

from wirehub.brokers.presence import DEFAULT_TTL
from wirehub.brokers.redis_pipeline import NotSent, OutcomeUnknown, Pipeline, ReplyError
from wirehub.brokers.redis_presence import RedisPresence
from wirehub.brokers.subscriber import Subscriber

__all__ = ["BrokerState", "RedisBroker"]

logger = logging.getLogger("wirehub.broker")

# Redis can no longer be trusted to deliver: reconnect.
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
# Error replies that mean "not here, not now" (a Cluster's slots moved, a
# failover, a Redis still loading): the command was not applied; reconnect.
_ELSEWHERE = ("MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "LOADING")


class BrokerState(enum.StrEnum):
    """Where the broker's link to Redis stands (``health()["state"]``)."""

    IDLE = "idle"  # not started
    CONNECTING = "connecting"  # first attempt
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # Redis unreachable: publishes and joins fail, retryable
    CLOSED = "closed"


StateCallback = Callable[[BrokerState, BaseException | None], None]


class RedisBroker:
    """Carries publications between nodes through Redis pub/sub.

    ``url`` is a redis-py URL (``redis://[:password@]host:port/db``,
    ``rediss://`` for TLS, ``unix://``). ``prefix`` starts every key and
    channel: hubs sharing a Redis but not their clients use different ones.
    ``history_size`` publications (at most ``history_bytes`` bytes) are kept
    per room; the room's key expires ``history_ttl`` seconds after its last
    publication or position check (every node checks the rooms it has
    members in every 10 s, so those keep their epoch), and a room used again
    after that starts a new epoch. Keys always expire; bound Redis's memory
    in total with ``maxmemory`` and ``maxmemory-policy volatile-lru`` (a room
    Redis evicts starts a new epoch too: its members get a gap notice).
    ``cluster=True`` talks to a Redis Cluster and uses sharded pub/sub
    (``SPUBLISH``/``SSUBSCRIBE``, Redis 7). ``timeout`` bounds every
    command and connection attempt; ``keepalive`` is how often the pub/sub
    connection is pinged; ``reconnect`` is the first and the longest delay
    between reconnection attempts. ``on_state_change(state, error)`` is
    called on every change of ``state`` (for alerts and metrics).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "wirehub",
        history_size: int = 100,
        history_ttl: float = 3600.0,
        history_bytes: int = 1 << 20,
        cluster: bool = False,
        timeout: float = 5.0,
        keepalive: float = 10.0,
        reconnect: tuple[float, float] = (0.1, 5.0),
        max_connections: int = 32,
        on_state_change: StateCallback | None = None,
    ) -> None:
        if not prefix:
            raise ConfigError("RedisBroker needs a non-empty prefix")
        if history_size < 0 or history_bytes < 0:
            raise ConfigError("history_size and history_bytes are 0 or more")
        if history_ttl is None or not history_ttl > 0:
            raise ConfigError("history_ttl is seconds above 0: Redis keys always expire")
        try:
            self._kwargs = dict(aioredis.connection.parse_url(url))
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL: {exc}") from None
        self.url = url
        self.prefix = prefix
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.history_bytes = history_bytes
        self.cluster = cluster
        self.timeout = timeout
        self.keepalive = keepalive
        self.reconnect = reconnect
        self.max_connections = max_connections
        self.on_state_change = on_state_change
        self.node = ""  # this process's name in Redis (CLIENT LIST) and health; set by start()
        self.state = BrokerState.IDLE
        self.reconnects = 0
        self.last_error: str | None = None
        self._listener: BrokerListener | None = None
        self._rooms: dict[str, int] = {}  # subscribe() calls minus unsubscribe() calls
        self._client: RedisCluster | None = None  # the Cluster's slot map (cluster=True)
        self._commands = Commands(
            prefix,
            size=history_size,
            ttl=history_ttl,
            sharded=cluster,
            max_bytes=history_bytes,
        )
        self._epoch = 0  # see _next_epoch; random from start()
        self._pipelines: dict[str, Pipeline] = {}  # by Redis node name ("" standalone)
        self._subscribers: dict[str, Subscriber] = {}  # by Redis node name ("" standalone)
        self._accepting = False  # subscribe()/unsubscribe() go straight to the subscribers
        self._fault: asyncio.Future[BaseException] | None = None
        self._settled: asyncio.Event | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._undeliverable = 0
        self._last_reported: str | None = None

    # -- Broker ------------------------------------------------------------------

    async def start(self, listener: BrokerListener) -> None:
        """Connect; if Redis is unreachable, serve locally and keep trying.

        Returns after the first attempt, connected or not: a node starting
        while Redis is down still serves its own clients.
        """
        if self._supervisor is not None:
            raise ConfigError("this RedisBroker is already started")
        self._listener = listener
        # Here, not in __init__: workers fork after that.
        self.node = secrets.token_urlsafe(6)
        self._epoch = int.from_bytes(secrets.token_bytes(6))
        self._open_client()
        self._settled = asyncio.Event()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        await self._settled.wait()

    async def close(self) -> None:
        """Stop the supervisor, every subscriber and the command connections."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        await self._drop_subscribers()
        pipelines, self._pipelines = list(self._pipelines.values()), {}
        await _to_the_end(asyncio.gather(*(p.close() for p in pipelines)))
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
        self._listener = None
        if self.state is not BrokerState.IDLE:
            self._set_state(BrokerState.CLOSED, None)

    async def publish(self, publication: Publication) -> Position | None:
        """Publish through Redis; raises ``Unavailable`` when Redis does not take it.

        Every publication of this node to one Redis server (one shard of a
        Cluster) goes through one ordered pipeline (``Pipeline``), so Redis
        applies them in the order the node issued them — per-sender order,
        as with the memory broker — and a round trip is shared by all sent
        meanwhile. When the reply is lost (the connection failed or the reply
        timed out) the outcome is unknown: ``Unavailable`` says so in its
        message and ``details["outcome"] == "unknown"``; if Redis applied it,
        every node delivers it once, with its position.
        """
        self._check_connected()
        command = self._commands.publish(publication, self._next_epoch())
        channel = channel_of(self.prefix, publication)
        reply = await self._reply(channel, command, "publish")
        return parse_position(reply) if publication.numbered else None

    def _next_epoch(self) -> bytes:
        """The epoch a publication starts its room on if the room has none: 48 bits that
        start random and count up, so no two of this node's are alike (cheaper than
        fresh randomness each time; the script uses it only for a new stream)."""
        self._epoch = (self._epoch + 1) & 0xFFFF_FFFF_FFFF
        return base64.urlsafe_b64encode(self._epoch.to_bytes(6))

    async def _reply(self, channel: str, command: bytes, what: str) -> Any:
        """Send ``command`` through the pipeline of ``channel``'s server; its reply, or
        ``Unavailable`` when Redis did not take it (or cannot say whether it did)."""
        fault = self._fault  # a failure reported later must not fault a newer connection
        pipeline = self._pipelines.get(self._node_of(channel))
        if pipeline is None:
            self._lost(RedisConnectionError(f"no connection to the server of {channel!r}"), fault)
            raise Unavailable(f"cannot {what}: no connection to the Redis server of {channel!r}")
        try:
            reply = await pipeline.send(command)
        except NotSent as exc:
            raise Unavailable(f"Redis did not take the {what}: {exc}") from None
        except OutcomeUnknown as exc:
            raise Unavailable(
                f"Redis may or may not have applied the {what}: {exc}", {"outcome": "unknown"}
            ) from None
        if isinstance(reply, ReplyError):
            self._refused(pipeline, reply, fault)
            raise Unavailable(f"Redis refused the {what}: {reply}")
        return reply

    def _refused(
        self, pipeline: Pipeline, error: ReplyError, fault: asyncio.Future[BaseException] | None
    ) -> None:
        """An error reply: reload the scripts, find the Cluster's new primaries, or report it."""
        text = str(error)
        if text.startswith("NOSCRIPT"):  # SCRIPT FLUSH: load them again, in line
            for command in self._commands.load():
                _forget(pipeline.send(command))
        elif text.startswith(_ELSEWHERE):
            self._lost(RedisConnectionError(text), fault)
        else:
            self._report(error)

    async def subscribe(self, room: str) -> None:
        """Count a local room; the first count subscribes and waits for Redis to confirm.

        Raises ``Unavailable`` when Redis is out of reach or does not confirm
        within ``timeout``. The count stays either way (the broker subscribes
        every counted room when it reconnects): give it back with
        ``unsubscribe``, as after a success.
        """
        count = self._rooms[room] = self._rooms.get(room, 0) + 1
        if count > 1 and self._accepting:
            return
        channel = room_channel(self.prefix, room)
        subscriber = self._subscriber_for(channel) if self._accepting else None
        try:
            if subscriber is None:
                raise RedisConnectionError("not connected to Redis")
            # On a timeout the subscriber closes itself and the supervisor reconnects.
            if not await _in_task(subscriber.subscribe([channel])):
                raise RedisConnectionError("the connection closed while subscribing")
        except (*_UNREACHABLE, RedisError) as exc:
            raise Unavailable(f"cannot subscribe to {channel!r}: {_describe(exc)}") from None

    async def unsubscribe(self, room: str) -> None:
        """Uncount a local room; the last one unsubscribes.

        Counting (rather than a set) keeps the subscription right when the
        hub's calls overlap, e.g. a leave's unsubscribe that runs after the
        next member's subscribe.
        """
        if not self._uncount(room) and self._accepting:
            channel = room_channel(self.prefix, room)
            subscriber = self._subscriber_for(channel)
            if subscriber is not None:
                await _in_task(subscriber.unsubscribe([channel]))

    async def history(self, room: str, since: Position | None, limit: int) -> History:
        """Read ``room``'s position and kept publications; raises ``Unavailable``
        when Redis cannot answer (it never guesses a position). Goes through the
        room's pipeline, so it sees every publication this node made before."""
        self._check_connected()
        command = self._commands.history(room, since, limit, self._next_epoch())
        reply = await self._reply(room_channel(self.prefix, room), command, "history read")
        try:
            position, publications, recovered = parse_history(reply, since)
        except EnvelopeError as exc:
            self._report(exc)
            raise Unavailable(f"cannot read history from Redis: {_describe(exc)}") from None
        return History(position, publications, recovered)

    def presence_store(self, *, ttl: float = DEFAULT_TTL) -> RedisPresence:
        """A presence store on this broker's Redis, prefix and mode (``Hub(presence=True)``)."""
        return RedisPresence(self.url, prefix=self.prefix, ttl=ttl, cluster=self.cluster)

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "broker": "redis",
            "ok": self.state is BrokerState.CONNECTED,
            "state": str(self.state),
            "node": self.node,
            "url": _redact(self.url),
            "rooms": len(self._rooms),
            "reconnects": self.reconnects,
        }
        if self.cluster:
            report["cluster"] = True
        if self.last_error is not None and self.state is not BrokerState.CONNECTED:
            report["error"] = self.last_error
        if self._undeliverable:
            report["undeliverable"] = self._undeliverable
        return report

    # -- supervision ---------------------------------------------------------------

    async def _supervise(self) -> None:
        """Connect, wait for a fault, reconnect with backoff: for the broker's lifetime."""
        attempt = 0
        self._set_state(BrokerState.CONNECTING, None)
        while True:
            self._fault = asyncio.get_running_loop().create_future()
            try:
                await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._drop_subscribers()
                self._set_state(BrokerState.RECONNECTING, exc)
                await asyncio.sleep(self._delay(attempt))
                attempt += 1
                continue
            attempt = 0
            self._set_state(BrokerState.CONNECTED, None)
            if self._listener is not None:
                self._listener.resubscribed()  # what was published meanwhile: fill or tell
            error = await self._until_fault()
            # The pipelines stay while they work: a lost pub/sub connection alone
            # must not fail the publishes in flight; a failed pipeline is replaced.
            await self._drop_subscribers()
            self.reconnects += 1
            self._set_state(BrokerState.RECONNECTING, error)
            await asyncio.sleep(self._delay(0))

    async def _connect(self) -> None:
        """Open a pipeline and a subscriber per server, then subscribe to every channel
        this node needs."""
        nodes: dict[str, tuple[str, int] | None] = {"": None}
        if self._client is not None:
            await self._client.initialize()
            await self._client.nodes_manager.initialize()  # fresh slots after a fault
            nodes = {n.name: (n.host, int(n.port)) for n in self._client.get_primaries()}
        await self._open_pipelines(nodes)
        for name, address in nodes.items():
            subscriber = Subscriber(
                self._connection(address, "sub"),
                self._deliver,
                sharded=self.cluster,
                keepalive=self.keepalive,
                timeout=self.timeout,
            )
            self._subscribers[name] = subscriber
            await subscriber.open()
        # From here on, subscribe() and unsubscribe() talk to the subscribers
        # themselves; the snapshot below is taken in the same step, so no
        # room is missed (one subscribed twice is harmless).
        self._accepting = True
        wanted = [all_channel(self.prefix), peer_channel(self.prefix)]
        wanted += [room_channel(self.prefix, room) for room in self._rooms]
        groups: dict[str, list[str]] = {}
        for channel in wanted:
            groups.setdefault(self._node_of(channel), []).append(channel)
        confirmed = await asyncio.gather(
            *(self._subscribers[name].subscribe(channels) for name, channels in groups.items())
        )
        if not all(confirmed):
            raise RedisConnectionError("the connection closed while subscribing")

    async def _open_pipelines(self, nodes: dict[str, tuple[str, int] | None]) -> None:
        """Keep the pipelines that work, retire those to servers that are no longer
        primaries, open the missing ones (and load the scripts on them)."""
        for name, pipeline in list(self._pipelines.items()):
            if name not in nodes or not pipeline.usable:
                del self._pipelines[name]
                pipeline.retire()
        for name, address in nodes.items():
            if name in self._pipelines:
                continue
            pipeline = Pipeline(
                self._connection(address, "pub"), timeout=self.timeout, on_lost=self._pipeline_lost
            )
            await pipeline.open()
            self._pipelines[name] = pipeline
            for reply in await asyncio.gather(*map(pipeline.send, self._commands.load())):
                if isinstance(reply, ReplyError):
                    raise reply

    def _pipeline_lost(self, exc: BaseException) -> None:
        self._lost(exc, self._fault)

    async def _until_fault(self) -> BaseException:
        """Wait until a subscriber closes or a command finds Redis unreachable."""
        assert self._fault is not None
        waiting: list[asyncio.Future[BaseException]] = [self._fault]
        waiting += [s.closed for s in self._subscribers.values()]
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()

    async def _drop_subscribers(self) -> None:
        self._accepting = False
        subscribers, self._subscribers = list(self._subscribers.values()), {}
        await _to_the_end(asyncio.gather(*(s.close() for s in subscribers)))

    def _lost(self, exc: BaseException, fault: asyncio.Future[BaseException] | None) -> None:
        """A command found Redis unreachable: reconnect, unless that was about an
        earlier connection (``fault`` is the one the command started under)."""
        if fault is not None and not fault.done():
            fault.set_result(exc)

    def _set_state(self, state: BrokerState, error: BaseException | None) -> None:
        previous, self.state = self.state, state
        if error is not None:
            self.last_error = f"{type(error).__name__}: {error}".rstrip(": ")
        # Log changes only, never each retry (an outage is one warning, not thousands).
        if state is BrokerState.CONNECTED:
            self._last_reported = None
            if previous is BrokerState.CONNECTING:
                logger.info("redis broker %s connected to %s", self.node, _redact(self.url))
            else:
                logger.warning("redis broker %s reconnected to %s", self.node, _redact(self.url))
        elif state is BrokerState.RECONNECTING and previous is not BrokerState.RECONNECTING:
            logger.warning(
                "redis broker %s cannot reach %s (%s); emits and joins fail until it reconnects",
                self.node,
                _redact(self.url),
                self.last_error,
            )
        elif state is BrokerState.CLOSED:
            logger.debug("redis broker %s closed", self.node)
        if self._settled is not None and state is not BrokerState.CONNECTING:
            self._settled.set()
        if self.on_state_change is not None and state is not previous:
            try:
                self.on_state_change(state, error)
            except Exception:
                logger.exception("on_state_change callback failed")

    def _delay(self, attempt: int) -> float:
        first, longest = self.reconnect
        delay: float = min(longest, first * 2**attempt)
        return delay * random.uniform(0.5, 1.0)

    def _report(self, exc: BaseException) -> None:
        """An error Redis answered (not an outage): log it once until things work again."""
        self._undeliverable += 1
        message = f"{type(exc).__name__}: {exc}"
        if message != self._last_reported:
            self._last_reported = message
            logger.error("redis broker %s: %s", self.node, message)

    # -- connections -----------------------------------------------------------------

    def _open_client(self) -> None:
        """On a Cluster, the redis-py client that keeps the slot map (no commands go
        through it: the pipelines and subscribers have their own connections)."""
        if self.cluster:
            self._client = RedisCluster.from_url(
                self.url,
                max_connections=self.max_connections,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                client_name=f"{self.prefix}:{self.node}",
            )

    def _connection(self, address: tuple[str, int] | None, role: str) -> AbstractConnection:
        """A fresh connection (``role`` "sub" or "pub", in its client name), RESP2, no
        retries: the broker reconnects itself. No read timeout once connected: the
        subscribers ping, the pipelines time their replies."""
        kwargs = dict(self._kwargs)
        connection_class: Any = kwargs.pop("connection_class", aioredis.Connection)
        if address is not None:
            kwargs["host"], kwargs["port"] = address
            kwargs.pop("db", None)
        kwargs.update(
            socket_timeout=None,
            socket_connect_timeout=self.timeout,
            client_name=f"{self.prefix}:{self.node}:{role}",
            retry=Retry(NoBackoff(), 0),
            protocol=2,
        )
        connection: AbstractConnection = connection_class(**kwargs)
        return connection

    def _node_of(self, channel: str) -> str:
        if self._client is None:
            return ""
        node = self._client.get_node_from_key(channel)
        return "?" if node is None else str(node.name)  # "?": no pipeline, Unavailable

    def _subscriber_for(self, channel: str) -> Subscriber | None:
        return self._subscribers.get(self._node_of(channel))

    # -- delivery ----------------------------------------------------------------------

    def _deliver(self, message: bytes) -> None:
        """A message from a subscriber: rebuild the publication and deliver it here."""
        try:
            publication = decode(message)
        except EnvelopeError as exc:
            self._report(exc)
            return
        if self._listener is not None:
            self._listener.deliver(publication)

    def _check_connected(self) -> None:
        """Fail at once while reconnecting: a command would only wait for its timeout
        (a frozen Redis), and the emit is refused either way."""
        if self.state is not BrokerState.CONNECTED:
            error = f": {self.last_error}" if self.last_error else ""
            raise Unavailable(f"the Redis broker is {self.state}{error}")

    def _uncount(self, room: str) -> bool:
        """Take back one ``subscribe`` of ``room``; True while others remain."""
        count = self._rooms.get(room, 0) - 1
        if count > 0:
            self._rooms[room] = count
            return True
        self._rooms.pop(room, None)
        return False


T = TypeVar("T")


async def _in_task(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` inside a task.

    The hub runs handlers eagerly, outside any task, until they first wait
    (hub/eager.py); redis-py's timeouts and ours need a current task.
    """
    if asyncio.current_task() is not None:
        return await coro
    return await asyncio.get_running_loop().create_task(coro)


async def _to_the_end(closing: asyncio.Future[Any]) -> None:
    """Await ``closing`` (connections being closed) to its end even when cancelled
    meanwhile, then let the cancellation through: a half-closed set leaks sockets."""
    try:
        await asyncio.shield(closing)
    except asyncio.CancelledError:
        await closing
        raise


def _forget(future: asyncio.Future[Any]) -> None:
    """Nobody waits for ``future``: consume its outcome (asyncio would log it)."""
    future.add_done_callback(lambda f: f.cancelled() or f.exception())


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _redact(url: str) -> str:
    """``url`` without its password, for logs and health."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))
