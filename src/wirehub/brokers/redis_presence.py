"""``RedisPresence``: the presence store of every node sharing a Redis.

Keys (all in one hash slot, ``{PREFIX:presence}``, so each script is atomic
on a Redis Cluster too), every one with a TTL of ``KEEP`` times ``ttl`` that
heartbeats and writes renew — longer than a node's ``ttl``, so that a dead
node is reaped (and its leaves announced) before its keys expire, and when
the last node stops, everything expires:

- ``…:nodes`` — sorted set: node → the time (Redis's clock, ms) it is taken for dead;
- ``…:room:ROOM`` — hash: peer id → ``NODE\\n{"id":…,"info":…}``;
- ``…:node:NODE`` — set of ``ROOM\\nPEER`` the node holds (to reap it);
- ``…:counts`` — hash: room → members.

Bounded: entries exist only for peers of live nodes (and of dead ones until
the next heartbeat reaps them), one per peer per room; a peer's ``info``
larger than ``MAX_INFO`` bytes is stored as ``{}``. Each script is one round
trip; a heartbeat reaps at most ``REAP_BATCH`` dead nodes; a ``sync`` sends
all of a node's entries in one script (about 100 bytes each).

Redis may lose any of these keys (a restart without persistence, FLUSHALL,
eviction under ``maxmemory``): ``add`` then finds its node unknown, or the
next heartbeat finds the node, its held set or one of its rooms missing,
and the node ``sync``s everything again; ``counts`` is rewritten from the
rooms' lengths at every write and heartbeat.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import msgspec

from wirehub.brokers.presence import DEFAULT_TTL, Heartbeat, PeerInfo
from wirehub.exceptions import ConfigError

try:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
except ImportError as exc:  # pragma: no cover - exercised by hand without the extra
    raise ImportError(
        "RedisPresence needs the redis package: pip install 'wirehub[redis]'"
    ) from exc

__all__ = ["MAX_INFO", "RedisPresence"]

logger = logging.getLogger("wirehub.presence")

MAX_INFO = 4096
REAP_BATCH = 16
KEEP = 3  # keys live this many ttl after their last renewal

_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "

# A room's count is its hash's length, written again at each change: an evicted
# ``counts`` heals at the next write or heartbeat.
_COUNT = """
local function count(counts, key, room)
  local n = redis.call('HLEN', key)
  if n == 0 then redis.call('HDEL', counts, room) else redis.call('HSET', counts, room, n) end
end
"""

# Take one ``ROOM\\nPEER`` entry of ``node`` out of its room (if it is still this node's).
_UNHOLD = """
local function unhold(base, counts, node, entry)
  local cut = string.find(entry, '\\n', 1, true)
  local room, id = string.sub(entry, 1, cut - 1), string.sub(entry, cut + 1)
  local key = base .. 'room:' .. room
  local value = redis.call('HGET', key, id)
  if value and string.sub(value, 1, #node + 1) == node .. '\\n' then
    redis.call('HDEL', key, id)
    count(counts, key, room)
    return {room, value}
  end
  return nil
end
"""

# KEYS: nodes, held, counts. ARGV: key base, node, ttl, keep (ms), replace (0|1), then
# room, peer id, value for each entry. With replace, the node's other entries go.
# Returns 1 if the node was known (0: new, reaped, or its state was lost).
ADD = (
    _COUNT
    + _UNHOLD
    + _NOW
    + """
local base, node, ttl, keep = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local known = redis.call('ZSCORE', KEYS[1], node)
redis.call('ZADD', KEYS[1], now + ttl, node)
if ARGV[5] == '1' then
  local wanted = {}
  for i = 6, #ARGV, 3 do wanted[ARGV[i] .. '\\n' .. ARGV[i + 1]] = true end
  for _, entry in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if not wanted[entry] then
      unhold(base, KEYS[3], node, entry)
      redis.call('SREM', KEYS[2], entry)
    end
  end
end
for i = 6, #ARGV, 3 do
  local key = base .. 'room:' .. ARGV[i]
  redis.call('HSET', key, ARGV[i + 1], ARGV[i + 2])
  count(KEYS[3], key, ARGV[i])
  redis.call('SADD', KEYS[2], ARGV[i] .. '\\n' .. ARGV[i + 1])
  redis.call('PEXPIRE', key, keep)
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], keep) end
return known == false and 0 or 1
"""
)

# KEYS: room, held, counts. ARGV: room, peer id.
REMOVE = (
    _COUNT
    + """
if redis.call('HDEL', KEYS[1], ARGV[2]) == 1 then count(KEYS[3], KEYS[1], ARGV[1]) end
redis.call('SREM', KEYS[2], ARGV[1] .. '\\n' .. ARGV[2])
return 1
"""
)

# KEYS: room, nodes. Values of members whose node is alive.
MEMBERS = (
    _NOW
    + """
local entries = redis.call('HGETALL', KEYS[1])
local alive, out = {}, {}
for i = 2, #entries, 2 do
  local value = entries[i]
  local node = string.sub(value, 1, string.find(value, '\\n', 1, true) - 1)
  if alive[node] == nil then
    local deadline = redis.call('ZSCORE', KEYS[2], node)
    alive[node] = deadline ~= false and tonumber(deadline) > now
  end
  if alive[node] then table.insert(out, value) end
end
return out
"""
)

# The reaping of one node, shared by HEARTBEAT (dead nodes) and DROP (a clean stop).
_FORGET = (
    _COUNT
    + _UNHOLD
    + """
local function forget(base, nodes, counts, node, departed)
  local held = base .. 'node:' .. node
  for _, entry in ipairs(redis.call('SMEMBERS', held)) do
    local gone = unhold(base, counts, node, entry)
    if gone then
      table.insert(departed, gone[1])
      table.insert(departed, gone[2])
    end
  end
  redis.call('DEL', held)
  redis.call('ZREM', nodes, node)
end
"""
)

# KEYS: nodes, counts. ARGV: key base, node.
DROP = _FORGET + "forget(ARGV[1], KEYS[1], KEYS[2], ARGV[2], {}) return 1"

# KEYS: nodes, counts, held (this node's). ARGV: key base, node, ttl, keep (ms), and the
# rooms where the node has members. Returns {1 if the store lost this node's entries (the
# node unknown, its held set or one of its rooms missing), {room, value, room, value…}}.
HEARTBEAT = (
    _FORGET
    + _NOW
    + """
local base, ttl, keep = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local lost = redis.call('ZSCORE', KEYS[1], ARGV[2]) == false
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
for i = 1, 2 do redis.call('PEXPIRE', KEYS[i], keep) end
if redis.call('PEXPIRE', KEYS[3], keep) == 0 and #ARGV > 4 then lost = true end
for i = 5, #ARGV do
  local key = base .. 'room:' .. ARGV[i]
  if redis.call('PEXPIRE', key, keep) == 0 then lost = true else count(KEYS[2], key, ARGV[i]) end
end
local departed = {}
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, """
    + str(REAP_BATCH)
    + """)
for _, node in ipairs(dead) do forget(base, KEYS[1], KEYS[2], node, departed) end
return {lost and 1 or 0, departed}
"""
)


class _Entry(msgspec.Struct):
    id: str
    info: dict[str, Any]


_decode_entry = msgspec.json.Decoder(_Entry).decode


class RedisPresence:
    """Presence in Redis for every node of a hub (see the module docstring).

    ``url``, ``prefix`` and ``cluster`` as for ``RedisBroker`` (use the
    broker's: ``RedisBroker.presence_store()`` does); ``ttl``: seconds
    without a heartbeat after which a node is taken for dead.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "wirehub",
        ttl: float = DEFAULT_TTL,
        cluster: bool = False,
        timeout: float = 5.0,
    ) -> None:
        if ttl <= 0:
            raise ConfigError("the presence ttl is a positive number of seconds")
        self.url = url
        self.ttl = ttl
        self.cluster = cluster
        self.timeout = timeout
        self.base = f"{{{prefix}:presence}}:"
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    @property
    def _keep_ms(self) -> int:
        return KEEP * self._ttl_ms

    async def start(self) -> None:
        options = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            # Once more on a fresh connection: after a Redis restart a pooled one is dead.
            "retry": Retry(NoBackoff(), 1),
            "retry_on_error": [RedisConnectionError],
        }
        if self.cluster:
            self._client = RedisCluster.from_url(self.url, **options)
        else:
            self._client = aioredis.from_url(self.url, **options)
        for name, source in (
            ("add", ADD),
            ("remove", REMOVE),
            ("members", MEMBERS),
            ("heartbeat", HEARTBEAT),
            ("drop", DROP),
        ):
            self._scripts[name] = self._client.register_script(source)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def add(self, node: str, room: str, peer: PeerInfo) -> bool:
        return await self._add(node, [(room, peer)], replace=False)

    async def sync(self, node: str, entries: Collection[tuple[str, PeerInfo]]) -> None:
        await self._add(node, entries, replace=True)

    async def _add(
        self, node: str, entries: Collection[tuple[str, PeerInfo]], *, replace: bool
    ) -> bool:
        keys = [self._key("nodes"), self._held(node), self._key("counts")]
        args: list[Any] = [self.base, node, self._ttl_ms, self._keep_ms, int(replace)]
        for room, peer in entries:
            args += [room, peer.id, node.encode() + b"\n" + _encode(peer)]
        return bool(await self._scripts["add"](keys=keys, args=args))

    async def remove(self, node: str, room: str, peer_id: str) -> None:
        keys = [self._room(room), self._held(node), self._key("counts")]
        await self._scripts["remove"](keys=keys, args=[room, peer_id])

    async def members(self, room: str) -> list[PeerInfo]:
        values = await self._scripts["members"](keys=[self._room(room), self._key("nodes")])
        return [_peer(value) for value in values]

    async def rooms(self) -> dict[str, int]:
        counts = await self._client.hgetall(self._key("counts"))
        return {room.decode(): int(count) for room, count in counts.items()}

    async def heartbeat(self, node: str, rooms: Collection[str]) -> Heartbeat:
        keys = [self._key("nodes"), self._key("counts"), self._held(node)]
        args = [self.base, node, self._ttl_ms, self._keep_ms, *rooms]
        lost, flat = await self._scripts["heartbeat"](keys=keys, args=args)
        departed = [(flat[i].decode(), _peer(flat[i + 1])) for i in range(0, len(flat), 2)]
        return Heartbeat(departed, lost=bool(lost))

    async def drop(self, node: str) -> None:
        keys = [self._key("nodes"), self._key("counts")]
        await self._scripts["drop"](keys=keys, args=[self.base, node])

    def _key(self, name: str) -> str:
        return self.base + name

    def _room(self, room: str) -> str:
        return f"{self.base}room:{room}"

    def _held(self, node: str) -> str:
        return f"{self.base}node:{node}"


def _encode(peer: PeerInfo) -> bytes:
    entry = msgspec.json.encode(_Entry(peer.id, peer.info))
    if len(entry) > MAX_INFO:
        logger.warning("presence info of peer %s is over %d bytes: not kept", peer.id, MAX_INFO)
        entry = msgspec.json.encode(_Entry(peer.id, {}))
    return entry


def _peer(value: bytes) -> PeerInfo:
    node, _, entry = value.partition(b"\n")
    decoded = _decode_entry(entry)
    return PeerInfo(decoded.id, decoded.info, node.decode())
