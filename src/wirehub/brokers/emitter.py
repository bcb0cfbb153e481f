"""``Emitter`` and ``AsyncEmitter``: emit to wirehub's clients from any process.

A cron job, a Django view or a Celery task holds no WebSocket: it publishes
through the Redis backplane exactly as a node does (the same script, the
same envelope), and every node delivers to its own peers::

    from wirehub import Emitter

    with Emitter("redis://10.0.0.5:6379/0") as emitter:
        emitter.emit("news", {"title": "hi"}, room="lobby")

Use the same ``prefix``, ``history_size``, ``history_ttl``, ``history_bytes`` and ``cluster`` as
the nodes. ``redis`` is imported when an emitter is created, so importing
wirehub never needs it.
"""

from __future__ import annotations

import secrets
from types import ModuleType, TracebackType
from typing import Any

from wirehub.brokers.base import Publication
from wirehub.brokers.redis_wire import (
    PUBLISH_SCRIPT,
    channel_of,
    encode,
    parse_position,
    publish_args,
    room_channel,
)
from wirehub.exceptions import ConfigError
from wirehub.protocol.messages import Position, event_body

__all__ = ["AsyncEmitter", "Emitter"]


def _redis() -> ModuleType:
    try:
        import redis
        import redis.asyncio
        import redis.asyncio.cluster
        import redis.cluster
    except ImportError:
        raise ImportError(
            "wirehub's emitters need the redis package: pip install 'wirehub[redis]'"
        ) from None
    return redis


class _Base:
    _asyncio = False  # which redis-py client family to build

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
    ) -> None:
        if not prefix:
            raise ConfigError("an emitter needs a non-empty prefix")
        self.prefix = prefix
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.history_bytes = history_bytes
        self.cluster = cluster
        redis = _redis()
        family = redis.asyncio if self._asyncio else redis
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if cluster:
            self.client: Any = family.cluster.RedisCluster.from_url(url, **options)
        else:
            self.client = family.Redis.from_url(url, **options)
        self._publish = self.client.register_script(PUBLISH_SCRIPT)

    def _publication(
        self, event: str, data: Any, room: str | None, peer: str | None
    ) -> Publication:
        if room is not None and peer is not None:
            raise ConfigError("emit to a room or to a peer, not both")
        body, binary = event_body(event, data)
        return Publication(body, binary, room=room, peer=peer)

    def _script_args(self, publication: Publication) -> list[Any]:
        return publish_args(
            publication,
            epoch=secrets.token_urlsafe(6),
            size=self.history_size,
            ttl=self.history_ttl,
            sharded=self.cluster,
            max_bytes=self.history_bytes,
        )

    @property
    def _publish_command(self) -> str:
        return "SPUBLISH" if self.cluster else "PUBLISH"


class Emitter(_Base):
    """Emits through Redis from synchronous code; thread-safe (redis-py pools connections)."""

    def emit(
        self, event: str, data: Any = None, room: str | None = None, peer: str | None = None
    ) -> Position | None:
        """Send ``event`` to ``room``, to one ``peer``, or (neither) to every peer.

        Returns the room event's position. Raises redis-py's errors when Redis
        cannot be reached: there is no local peer to fall back to here.
        """
        publication = self._publication(event, data, room, peer)
        if room is not None:
            key = room_channel(self.prefix, room)
            return parse_position(self._publish(keys=[key], args=self._script_args(publication)))
        channel = channel_of(self.prefix, publication)
        self.client.execute_command(self._publish_command, channel, encode(publication))
        return None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Emitter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncEmitter(_Base):
    """Emits through Redis from asyncio code (another service, not a wirehub node)."""

    _asyncio = True

    async def emit(
        self, event: str, data: Any = None, room: str | None = None, peer: str | None = None
    ) -> Position | None:
        """Send ``event`` to ``room``, to one ``peer``, or (neither) to every peer."""
        publication = self._publication(event, data, room, peer)
        if room is not None:
            key = room_channel(self.prefix, room)
            reply = await self._publish(keys=[key], args=self._script_args(publication))
            return parse_position(reply)
        channel = channel_of(self.prefix, publication)
        await self.client.execute_command(self._publish_command, channel, encode(publication))
        return None

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> AsyncEmitter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
