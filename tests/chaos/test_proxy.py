"""The chaos proxy in front of a real redis-server: it forwards, and delays, drops,
pauses and cuts exactly what it is told to."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.chaos.proxy import Proxy, Rule, parse_resp
from tests.conftest import UNIT
from tests.services import RedisServer


def command(*args: str) -> bytes:
    return f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args
    )


class Connection:
    """A raw RESP connection: send commands, read whole replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = bytearray()

    def send(self, *args: str) -> None:
        self.writer.write(command(*args))

    async def reply(self, timeout: float = 2 * UNIT) -> object:
        async with asyncio.timeout(timeout):
            while (parsed := parse_resp(self.buffer)) is None:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buffer += chunk
        value, end = parsed
        del self.buffer[:end]
        return value


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[Connection]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield Connection(reader, writer)
    finally:
        writer.transport.abort()


def test_parse_resp_reads_resp2_and_resp3_whole_or_not_at_all() -> None:
    """Every RESP type comes back whole; any prefix of it is incomplete (None)."""
    cases = {
        b"+OK\r\n": b"OK",
        b"-ERR no\r\n": b"ERR no",
        b":42\r\n": b"42",
        b"$5\r\nhello\r\n": b"hello",
        b"$-1\r\n": None,
        b"*2\r\n$4\r\nECHO\r\n$1\r\na\r\n": [b"ECHO", b"a"],
        b"%1\r\n+k\r\n:1\r\n": [b"k", b"1"],
        b">2\r\n+message\r\n$1\r\nx\r\n": [b"message", b"x"],
        b"|1\r\n+ttl\r\n:3\r\n+value\r\n": b"value",
        b"_\r\n": b"",
        b"#t\r\n": b"t",
    }
    for raw, value in cases.items():
        assert parse_resp(raw + b"+next\r\n") == (value, len(raw))
        for end in range(len(raw)):
            assert parse_resp(raw[:end]) is None, raw[:end]
    with pytest.raises(ValueError, match="not RESP"):
        parse_resp(b"?what\r\n")


async def test_forwards_commands_and_replies(redis_server: RedisServer) -> None:
    """Pipelined commands reach Redis and their replies come back, in order."""
    with Proxy(redis_server.port, resp=True) as proxy:
        async with connection(proxy.port) as redis:
            for word in ("a", "b", "c"):
                redis.send("ECHO", word)
            assert [await redis.reply() for _ in range(3)] == [b"a", b"b", b"c"]


async def test_delays_one_command_going_up(redis_server: RedisServer) -> None:
    """A delayed command holds its connection back; other connections go on."""
    with Proxy(redis_server.port, resp=True) as proxy:
        rule = proxy.add(Rule("up", "ECHO", ("slow",), delay=UNIT, limit=1))
        async with connection(proxy.port) as slow, connection(proxy.port) as fast:
            slow.send("ECHO", "slow")
            fast.send("ECHO", "fast")
            first = asyncio.ensure_future(slow.reply())
            assert await fast.reply() == b"fast"
            assert not first.done()
            assert await first == b"slow"
            slow.send("ECHO", "slow")  # the limit is reached: no delay this time
            assert await slow.reply(UNIT / 2) == b"slow"
        assert rule.matched == 1


async def test_drops_the_reply_of_one_command(redis_server: RedisServer) -> None:
    """A reply is matched with its command: only ``ECHO b``'s is dropped."""
    with Proxy(redis_server.port, resp=True) as proxy:
        proxy.add(Rule("down", "ECHO", ("b",), drop=True))
        async with connection(proxy.port) as redis:
            for word in ("a", "b", "c"):
                redis.send("ECHO", word)
            assert [await redis.reply(), await redis.reply()] == [b"a", b"c"]


async def test_pubsub_pushes_are_never_taken_for_replies(redis_server: RedisServer) -> None:
    """After SUBSCRIBE, what comes down answers nothing: reply rules leave it alone."""
    with Proxy(redis_server.port, resp=True) as proxy:
        rule = proxy.add(Rule("down", "SUBSCRIBE", drop=True))
        async with connection(proxy.port) as subscriber, connection(proxy.port) as publisher:
            subscriber.send("SUBSCRIBE", "news")
            assert await subscriber.reply() == [b"subscribe", b"news", b"1"]
            publisher.send("PUBLISH", "news", "hello")
            assert await publisher.reply() == b"1"
            assert await subscriber.reply() == [b"message", b"news", b"hello"]
        assert rule.matched == 0


async def test_pause_holds_what_comes_down_until_resumed(redis_server: RedisServer) -> None:
    """While paused nothing comes down; on resume it all does."""
    with Proxy(redis_server.port) as proxy:
        async with connection(proxy.port) as redis:
            proxy.pause()
            redis.send("PING")
            with pytest.raises(TimeoutError):
                await redis.reply(UNIT / 4)
            proxy.resume()
            assert await redis.reply() == b"PONG"


async def test_cut_resets_every_connection(redis_server: RedisServer) -> None:
    """``cut`` resets both sides of every open connection and says how many."""
    with Proxy(redis_server.port) as proxy:
        async with connection(proxy.port) as one, connection(proxy.port) as two:
            for redis in (one, two):
                redis.send("PING")
                assert await redis.reply() == b"PONG"
            assert proxy.cut() == 2
            for redis in (one, two):
                with pytest.raises(ConnectionError):
                    await redis.reply()
