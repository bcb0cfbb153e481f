"""``Emitter`` and ``AsyncEmitter``: another process emits to the hubs' clients through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest

from tests.apps.nodes import make_hub
from tests.conftest import Served, serve
from tests.hub.wire import WireClient, expect_nothing
from tests.test_cli import START
from wirehub import ConfigError, Emitter
from wirehub.brokers.redis import RedisBroker


async def run_script(source: str) -> str:
    """Run Python ``source`` in a fresh interpreter; return its stdout (it must exit 0)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(source),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), START)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


@contextlib.asynccontextmanager
async def two_nodes(url: str, prefix: str) -> AsyncIterator[tuple[Served, Served]]:
    async with (
        serve(make_hub("a", broker=RedisBroker(url, prefix=prefix))) as a,
        serve(make_hub("b", broker=RedisBroker(url, prefix=prefix))) as b,
    ):
        yield a, b


async def test_emitter_in_another_process_reaches_every_node(redis_url: str, prefix: str) -> None:
    """A synchronous Emitter in a separate process emits to a room, one peer and everyone."""
    async with (
        two_nodes(redis_url, prefix) as (a, b),
        await WireClient.open(a.ws("/ws")) as on_a,
        await WireClient.open(b.ws("/ws")) as on_b,
    ):
        await on_a.call_excluded("say", "first")  # the room's offset 1: on_a gets its skip
        assert (await on_b.recv())["offset"] == 1
        output = await run_script(
            f"""
            import json
            from wirehub import Emitter

            with Emitter({redis_url!r}, prefix={prefix!r}) as emitter:
                position = emitter.emit("news", {{"title": "hi"}}, room="lobby")
                emitter.emit("dm", "just you", peer={on_b.id!r})
                emitter.emit("all", b"\\x00bytes")
            print(json.dumps([position.epoch, position.offset]))
            """
        )
        epoch, offset = json.loads(output)
        assert offset == 2
        for client in (on_a, on_b):
            news = await client.recv()
            assert (news["event"], news["data"], news["room"]) == ("news", {"title": "hi"}, "lobby")
            assert (news["epoch"], news["offset"]) == (epoch, 2)
        assert (await on_b.recv())["data"] == "just you"
        for client in (on_a, on_b):
            everything = await client.recv()
            assert (everything["event"], everything["_payload"]) == ("all", b"\x00bytes")
        await expect_nothing(on_a)


async def test_async_emitter_in_another_process(redis_url: str, prefix: str) -> None:
    """An AsyncEmitter in a separate process emits through the same script and format."""
    async with (
        two_nodes(redis_url, prefix) as (a, _),
        await WireClient.open(a.ws("/ws")) as client,
    ):
        output = await run_script(
            f"""
            import asyncio
            from wirehub import AsyncEmitter

            async def main():
                async with AsyncEmitter({redis_url!r}, prefix={prefix!r}) as emitter:
                    position = await emitter.emit("tick", 1, room="lobby")
                    print(position.offset)

            asyncio.run(main())
            """
        )
        assert output.strip() == "1"
        message = await client.recv()
        assert (message["event"], message["data"], message["offset"]) == ("tick", 1, 1)


async def test_emitted_events_are_kept_for_recovery(redis_url: str, prefix: str) -> None:
    """What an emitter sends is kept in history: a later join with ``since`` replays it."""
    async with two_nodes(redis_url, prefix) as (_, b):
        with Emitter(redis_url, prefix=prefix) as emitter:
            first = emitter.emit("one", 1, room="lobby")
            emitter.emit("two", 2, room="lobby")
        assert first is not None
        async with await WireClient.open(b.ws("/ws")) as late:
            since = {"epoch": first.epoch, "offset": 0}
            await late.send({"type": "join", "room": "lobby", "since": since, "id": 1})
            replayed = [await late.recv() for _ in range(3)]
        assert [(m.get("event"), m.get("offset")) for m in replayed[:2]] == [("one", 1), ("two", 2)]
        assert replayed[2]["data"] == {"epoch": first.epoch, "offset": 2, "recovered": True}


def test_emitter_refuses_room_and_peer_together(redis_url: str) -> None:
    """An emit aimed at a room and a peer at once is a ConfigError."""
    with Emitter(redis_url) as emitter, pytest.raises(ConfigError):
        emitter.emit("x", room="a", peer="b")
