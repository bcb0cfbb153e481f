"""The Python client's own stream checks against a server that skips offsets or changes epoch.

A hub's node never lets its clients see such a stream (tests/client/test_gaps.py
has the gaps it announces itself); ``ScriptedRoom`` sends one on purpose, so
the client's re-join with ``since`` and its ``jump`` and ``epoch`` gaps are
tested over real sockets, and so are ``skip`` markers: checked like events,
delivered as nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.client.conftest import Inbox
from tests.client.scripted import ScriptedRoom
from tests.client.test_gaps import Log
from tests.conftest import serve
from wirehub.client import Client, Gap
from wirehub.protocol.messages import Position


@contextlib.asynccontextmanager
async def joined(room: ScriptedRoom, **options: Any) -> AsyncIterator[tuple[Client, Log]]:
    """Serve ``room``; a client logging ``said`` and gaps, joined to ``news``."""
    async with serve(room.hub()) as served:
        client = Client(served.ws("/ws"), **options)
        log = Log(client)
        async with client:
            await client.join("news")
            yield client, log


@pytest.mark.parametrize("skip", [False, True])
async def test_skipped_offsets_are_refilled_by_a_rejoin_with_since(skip: bool) -> None:
    """Offsets 2 and 3 never came live: the re-join from offset 1 replays them, in order, once
    — also when a ``skip`` shows the hole (replayed too, and dropped as a duplicate)."""
    room = ScriptedRoom()
    async with joined(room) as (client, log):
        said = Inbox()
        client.on("said", said.put)
        await room.publish(1)
        await room.publish(2, live=False)
        await room.publish(3, live=False)
        await room.publish(4, skip=skip)
        await room.publish(5)
        expected = [1, 2, 3, 5] if skip else [1, 2, 3, 4, 5]
        assert [await said.get() for _ in expected] == expected
        await client.ping()
        assert log.seen == [("said", n) for n in expected]  # no gap
        assert room.joins[-1]["since"] == {"epoch": "E1", "offset": 1}


async def test_offsets_history_no_longer_has_are_a_jump_gap() -> None:
    """The re-join cannot replay them: a ``jump`` gap, then what leads up to the ack."""
    room = ScriptedRoom(keep=2)
    async with joined(room) as (client, log):
        await room.publish(1)
        for n in (2, 3, 4):
            await room.publish(n, live=False)
        await room.publish(5)
        gap = await log.gaps.get()
        assert gap == Gap("news", "jump", Position("E1", 1), Position("E1", 4))
        await room.publish(6)
        await client.ping()
        assert log.seen == [("said", 1), ("gap", gap), ("said", 5), ("said", 6)]


async def test_a_new_epoch_is_an_epoch_gap_then_its_events() -> None:
    """Another epoch: the re-join says ``recovered: false``; the new epoch's events follow."""
    room = ScriptedRoom()
    async with joined(room) as (client, log):
        await room.publish("old")
        room.new_epoch()
        await room.publish("new")
        gap = await log.gaps.get()
        assert gap == Gap("news", "epoch", Position("E1", 1), Position("E2", 0))
        await client.ping()
        assert log.seen == [("said", "old"), ("gap", gap), ("said", "new")]


async def test_without_recover_a_jump_is_reported_at_once() -> None:
    """``recover=False``: no re-join; the skipped offsets are a gap, then the event."""
    room = ScriptedRoom()
    async with joined(room, recover=False) as (client, log):
        await room.publish(1, live=False)
        await room.publish(2)
        gap = await log.gaps.get()
        assert gap == Gap("news", "jump", Position("E1", 0), Position("E1", 1))
        await client.ping()
        assert log.seen == [("gap", gap), ("said", 2)]
        assert [join.get("since") for join in room.joins] == [None]


async def test_a_skip_takes_its_offset_and_delivers_nothing() -> None:
    """A ``skip`` between two events: both are delivered, no gap, no re-join."""
    room = ScriptedRoom()
    async with joined(room) as (client, log):
        await room.publish(1)
        await room.publish(2, skip=True)
        await room.publish(3)
        await client.ping()
        assert log.seen == [("said", 1), ("said", 3)]
        assert [join.get("since") for join in room.joins] == [None]


async def test_a_skip_at_the_ack_is_no_missing_event() -> None:
    """A re-join that cannot recover, with the ``skip`` at the ack's offset held: the gap
    ends before it (only offsets 2 to 4 may be missing)."""
    room = ScriptedRoom(keep=2)
    async with joined(room) as (client, log):
        await room.publish(1)
        for n in (2, 3, 4):
            await room.publish(n, live=False)
        await room.publish(5, skip=True)
        gap = await log.gaps.get()
        assert gap == Gap("news", "jump", Position("E1", 1), Position("E1", 4))
        await room.publish(6)
        await client.ping()
        assert log.seen == [("said", 1), ("gap", gap), ("said", 6)]


async def test_a_notice_in_a_recovered_replay_is_a_gap() -> None:
    """History lost offsets 2 and 3 and keeps a ``gap`` notice in their place: the re-join
    replays it and acks ``recovered: true``, and the notice is still reported before 4."""
    room = ScriptedRoom()
    async with joined(room) as (client, log):
        await room.publish(1)
        await room.publish(2, live=False, kept=False)
        await room.publish(3, live=False, kept=False)
        await room.notice("lost", live=False)
        await room.publish(4)  # past a hole: the re-join from 1 replays the notice and 4
        gap = await log.gaps.get()
        assert gap == Gap("news", "server", Position("E1", 1), Position("E1", 3), "lost")
        await client.ping()
        assert log.seen == [("said", 1), ("gap", gap), ("said", 4)]
        assert room.joins[-1]["since"] == {"epoch": "E1", "offset": 1}
