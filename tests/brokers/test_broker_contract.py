"""The guarantees of ``Broker`` (brokers/base.py), checked against every broker.

Each test runs once per broker (the ``start`` fixture is parametrized):
``MemoryBroker`` and ``RedisBroker`` on a real redis-server.
"""

from __future__ import annotations

import asyncio

from tests.brokers.conftest import Start
from wirehub.brokers.base import Publication
from wirehub.protocol.messages import Position


def event(n: int, room: str | None = "r", **fields: object) -> Publication:
    return Publication(b'"event":"e","data":%d}' % n, room=room, **fields)  # type: ignore[arg-type]


async def test_room_publications_arrive_in_order_with_offsets_counting_up(start: Start) -> None:
    """Publications to a room are delivered in order, offsets counting up by one in one epoch."""
    broker, node = await start()
    await broker.subscribe("r")
    positions = [await broker.publish(event(n)) for n in range(20)]
    assert all(p is not None for p in positions)
    epoch = positions[0].epoch  # type: ignore[union-attr]
    assert positions == [Position(epoch, n) for n in range(1, 21)]
    delivered = await node.take(20)
    assert [p.body for p in delivered] == [event(n).body for n in range(20)]
    assert [p.position for p in delivered] == positions


async def test_concurrent_publishers_get_consecutive_offsets_delivered_in_order(
    start: Start,
) -> None:
    """Publications racing into one room get distinct consecutive offsets, delivered in order."""
    broker, node = await start()
    await broker.subscribe("r")
    positions = await asyncio.gather(*(broker.publish(event(n)) for n in range(50)))
    assert sorted(p.offset for p in positions if p is not None) == list(range(1, 51))
    delivered = await node.take(50)
    assert [p.position.offset for p in delivered if p.position] == list(range(1, 51))


async def test_rooms_have_their_own_offsets(start: Start) -> None:
    """Each room counts its own offsets from 1."""
    broker, _ = await start()
    a = [await broker.publish(event(n, room="a")) for n in range(3)]
    b = [await broker.publish(event(n, room="b")) for n in range(2)]
    assert [p.offset for p in a if p] == [1, 2, 3]
    assert [p.offset for p in b if p] == [1, 2]


async def test_a_room_never_published_has_offset_0_and_keeps_its_epoch(start: Start) -> None:
    """A new room with members is at offset 0; its first publication gets that epoch and
    offset 1 (what a joiner learns holds even in a room nobody has published to)."""
    broker, _ = await start()
    await broker.subscribe("new")
    history = await broker.history("new", None, 10)
    assert history.position.offset == 0
    assert history.publications == []
    assert await broker.publish(event(1, room="new")) == Position(history.position.epoch, 1)


async def test_history_returns_the_latest_kept_publications(start: Start) -> None:
    """``since=None`` returns at most ``limit`` of the last kept publications, oldest first."""
    broker, _ = await start(history_size=3)
    for n in range(5):
        await broker.publish(event(n))
    latest = await broker.history("r", None, 10)
    assert [p.body for p in latest.publications] == [event(n).body for n in (2, 3, 4)]
    assert [p.position.offset for p in latest.publications if p.position] == [3, 4, 5]
    assert latest.position.offset == 5
    two = await broker.history("r", None, 2)
    assert [p.body for p in two.publications] == [event(n).body for n in (3, 4)]
    none = await broker.history("r", None, 0)
    assert (none.publications, none.position) == ([], latest.position)


async def test_recovery_replays_what_was_missed(start: Start) -> None:
    """``since`` a kept position replays the publications after it, ``recovered=True``."""
    broker, _ = await start(history_size=10)
    positions = [await broker.publish(event(n)) for n in range(5)]
    epoch = positions[0].epoch  # type: ignore[union-attr]
    missed = await broker.history("r", Position(epoch, 2), 100)
    assert missed.recovered
    assert [p.body for p in missed.publications] == [event(n).body for n in (2, 3, 4)]
    assert [p.position for p in missed.publications] == positions[2:]
    assert missed.position == positions[-1]
    up_to_date = await broker.history("r", Position(epoch, 5), 100)
    assert (up_to_date.recovered, up_to_date.publications) == (True, [])


async def test_recovery_fails_loudly_when_it_cannot_be_complete(start: Start) -> None:
    """Evicted events, another epoch, a position ahead or past the limit: ``recovered=False``."""
    broker, _ = await start(history_size=3)
    positions = [await broker.publish(event(n)) for n in range(6)]
    epoch = positions[0].epoch  # type: ignore[union-attr]
    for since, limit in [
        (Position(epoch, 1), 100),  # offsets 2 and 3 are no longer kept
        (Position("another", 5), 100),
        (Position(epoch, 9), 100),
        (Position(epoch, 4), 1),  # two missed, one allowed
    ]:
        history = await broker.history("r", since, limit)
        assert (history.recovered, history.publications) == (False, []), since
        assert history.position == positions[-1]
    assert (await broker.history("r", Position(epoch, 3), 100)).recovered


async def test_history_size_zero_keeps_nothing(start: Start) -> None:
    """With ``history_size=0`` positions still count, but any gap is unrecoverable."""
    broker, _ = await start(history_size=0)
    first = await broker.publish(event(1))
    second = await broker.publish(event(2))
    assert first is not None and second is not None and second.offset == 2
    assert not (await broker.history("r", first, 10)).recovered
    assert (await broker.history("r", second, 10)).recovered


async def test_presence_has_no_position_and_is_not_kept(start: Start) -> None:
    """Presence publications are delivered without a position, not counted and not kept."""
    broker, node = await start()
    await broker.subscribe("r")
    first = await broker.publish(event(1))
    notice = Publication(b'"joined":{"id":"x"}}', room="r", exclude="x", presence=True)
    assert await broker.publish(notice) is None
    second = await broker.publish(event(2))
    delivered = await node.take(3)
    assert delivered[1] == notice
    assert first is not None and second is not None and second.offset == first.offset + 1
    kept = await broker.history("r", None, 10)
    assert [p.body for p in kept.publications] == [event(1).body, event(2).body]


async def test_only_subscribed_rooms_are_delivered(start: Start) -> None:
    """A room publication reaches the node only while it is subscribed to the room."""
    broker, node = await start()
    await broker.publish(event(1, room="elsewhere"))
    await node.nothing_before(broker)
    await broker.subscribe("r")
    await broker.publish(event(2))
    assert (await node.next()).body == event(2).body
    await broker.unsubscribe("r")
    await broker.publish(event(3))
    await node.nothing_before(broker)


async def test_subscriptions_are_counted(start: Start) -> None:
    """Two subscribes need two unsubscribes, so overlapping joins and leaves end right."""
    broker, node = await start()
    await broker.subscribe("r")
    await broker.subscribe("r")
    await broker.unsubscribe("r")
    await broker.publish(event(1))
    assert (await node.next()).body == event(1).body
    await broker.unsubscribe("r")
    await broker.publish(event(2))
    await node.nothing_before(broker)


async def test_global_and_direct_publications_reach_every_node(start: Start) -> None:
    """Publications to every peer or to one peer need no subscription and keep every field."""
    broker, node = await start()
    everyone = Publication(b'"event":"all"}', exclude="sender")
    direct = Publication(b'"event":"dm"}', b"\x00\xff bytes", peer="someone")
    assert await broker.publish(everyone) is None
    assert await broker.publish(direct) is None
    assert await node.take(2) == [everyone, direct]


async def test_room_publications_keep_binary_and_exclude(start: Start) -> None:
    """A room publication arrives with its binary payload and excluded peer intact."""
    broker, node = await start()
    await broker.subscribe("r")
    sent = Publication(b'"event":"file"}', b"\x00\x01\x02", room="r", exclude="me")
    position = await broker.publish(sent)
    got = await node.next()
    assert (got.body, got.binary, got.room, got.exclude, got.position) == (
        sent.body,
        sent.binary,
        "r",
        "me",
        position,
    )
    [kept] = (await broker.history("r", None, 1)).publications
    assert (kept.binary, kept.position) == (sent.binary, position)


async def test_health_reports_name_and_ok(start: Start) -> None:
    """``health()`` names the broker and says it is ok once started."""
    broker, _ = await start()
    health = broker.health()
    assert isinstance(health["broker"], str)
    assert health["ok"] is True


async def test_history_is_bounded_in_bytes_oldest_first(start: Start) -> None:
    """Past ``history_bytes`` the oldest kept publications go; recovery says so, and what
    is still kept is still recovered."""
    broker, _ = await start(history_size=100, history_bytes=300)
    await broker.subscribe("r")
    big = Publication(b'"event":"e","data":"%s"}' % (b"x" * 80), room="r")
    positions = [await broker.publish(big) for _ in range(6)]
    assert all(p is not None for p in positions)
    latest = await broker.history("r", None, 100)
    kept = [p.position.offset for p in latest.publications if p.position]
    assert 1 <= len(kept) <= 3 and kept == list(range(7 - len(kept), 7))
    first_kept = Position(latest.position.epoch, kept[0] - 1)
    assert (await broker.history("r", first_kept, 100)).recovered
    assert not (await broker.history("r", Position(latest.position.epoch, 1), 100)).recovered


async def test_a_publication_too_big_to_keep_is_never_replayed_out_of_order(start: Start) -> None:
    """One publication above ``history_bytes`` is not kept: recovery across it fails, and
    recovery after it works."""
    broker, _ = await start(history_bytes=100)
    await broker.subscribe("r")
    small = await broker.publish(event(1))
    await broker.publish(Publication(b'"event":"e","data":"%s"}' % (b"x" * 200), room="r"))
    after = await broker.publish(event(3))
    assert small is not None and after is not None
    assert not (await broker.history("r", small, 10)).recovered
    assert (await broker.history("r", Position(after.epoch, after.offset - 1), 10)).recovered
