"""``MemoryBroker``'s bounds: totals, time, and what a join may cost."""

from __future__ import annotations

import asyncio

from wirehub.brokers.base import Publication
from wirehub.brokers.memory import MemoryBroker
from wirehub.protocol.messages import Position


def event(room: str, size: int = 10) -> Publication:
    return Publication(b'"event":"e","data":"%s"}' % (b"x" * size), room=room)


async def test_joins_of_any_number_of_rooms_never_evict_a_rooms_history() -> None:
    """Joined-and-left rooms with nothing kept go first: a busy room keeps its history."""
    broker = MemoryBroker(max_streams=3)
    busy = [await broker.publish(event("busy")) for _ in range(3)]
    for n in range(50):
        name = f"drive-by-{n}"
        await broker.subscribe(name)
        await broker.history(name, None, 0)
        await broker.unsubscribe(name)
    since = busy[0]
    assert since is not None
    recovery = await broker.history("busy", since, 10)
    assert recovery.recovered and len(recovery.publications) == 2
    assert broker.health()["streams"] <= 3


async def test_a_room_with_members_keeps_its_epoch_past_every_bound() -> None:
    """Totals trim a joined room's oldest publications, never its position or epoch."""
    broker = MemoryBroker(max_streams=1, max_history_bytes=100)
    await broker.subscribe("a")
    await broker.subscribe("b")
    first = await broker.publish(event("a", 60))
    await broker.publish(event("b", 60))
    second = await broker.publish(event("a", 60))
    assert first is not None and second is not None
    assert (second.epoch, second.offset) == (first.epoch, 2)
    assert broker.health()["history_bytes"] <= 100


async def test_a_room_without_members_is_forgotten_after_its_ttl() -> None:
    """``history_ttl`` after its last publication an idle room is gone: a new epoch."""
    broker = MemoryBroker(history_ttl=0.05)
    old = await broker.publish(event("r"))
    await asyncio.sleep(0.1)
    await broker.publish(event("other"))  # any publication sweeps expired rooms
    assert broker.health()["streams"] == 1
    assert old is not None
    recovery = await broker.history("r", old, 10)
    assert not recovery.recovered and recovery.position.epoch != old.epoch


async def test_a_room_nobody_joined_costs_nothing() -> None:
    """Asking for an unknown room's position stores nothing."""
    broker = MemoryBroker()
    for n in range(100):
        position = (await broker.history(f"r{n}", None, 0)).position
        assert position.offset == 0
    assert broker.health()["streams"] == 0
    assert not (await broker.history("r0", Position("x", 0), 10)).recovered
