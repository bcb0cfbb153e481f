"""``Stream``: every publication delivered once in position order, or a gap notice first.

The stream reads history from a real ``MemoryBroker`` that nothing is
subscribed to, so publishing there fills history without delivering; the
test then hands the stream the publications it "heard", holes and all.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses

from tests.conftest import UNIT
from wirehub.brokers.base import History, Publication
from wirehub.brokers.memory import MemoryBroker
from wirehub.brokers.redis import RedisBroker
from wirehub.hub.stream import Stream
from wirehub.protocol.messages import Position


class Outlet:
    """Records what the stream delivers: offsets, and ``("gap", epoch, offset, reason)``."""

    def __init__(self) -> None:
        self.got: list[object] = []
        self.changed = asyncio.Event()

    def deliver(self, publication: Publication) -> None:
        self.got.append(publication.position.offset if publication.position else publication.body)
        self.changed.set()

    def gap(self, position: Position, reason: str) -> None:
        self.got.append(("gap", position.epoch, position.offset, reason))
        self.changed.set()

    async def until(self, count: int) -> list[object]:
        async with asyncio.timeout(UNIT):
            while len(self.got) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.got


async def published(broker: MemoryBroker, n: int, room: str = "r") -> list[Publication]:
    """Publish ``n`` events to ``room``; return them with their positions."""
    out = []
    for i in range(n):
        body = b'"event":"e","data":%d}' % i
        position = await broker.publish(Publication(body, room=room))
        out.append(Publication(body, room=room, position=position))
    return out


async def started(broker: MemoryBroker, **options: object) -> tuple[Stream, Outlet]:
    outlet = Outlet()
    stream = Stream("r", broker, outlet, stats=collections.Counter(), **options)  # type: ignore[arg-type]
    await broker.subscribe("r")  # a room with members keeps its epoch (and the broker
    stream.start((await broker.history("r", None, 0)).position)  # delivers to nobody)
    return stream, outlet


async def test_in_order_publications_are_delivered_at_once_and_repeats_dropped() -> None:
    """Offsets that follow are delivered synchronously; an offset already delivered is not."""
    broker = MemoryBroker()
    stream, outlet = await started(broker)
    events = await published(broker, 3)
    for event in [events[0], events[1], events[1], events[0], events[2]]:
        stream.receive(event)
    assert outlet.got == [1, 2, 3]
    assert stream.stats["duplicates"] == 2 and not stream.busy


async def test_a_hole_is_filled_from_history_before_anything_later() -> None:
    """A jump waits for history: 1, then 2 and 3 read back, then 4 and 5 as they came."""
    broker = MemoryBroker()
    stream, outlet = await started(broker)
    events = await published(broker, 5)
    for index in (0, 3, 4, 2):  # 2 and 3 missed; a late live copy of 3 too
        stream.receive(events[index])
    assert await outlet.until(5) == [1, 2, 3, 4, 5]
    await asyncio.sleep(0)
    assert outlet.got == [1, 2, 3, 4, 5] and not stream.busy


async def test_a_hole_history_no_longer_has_is_a_gap_notice_before_the_next_event() -> None:
    """When history lost the missed events, members are told, then delivery goes on."""
    broker = MemoryBroker(history_size=2)
    stream, outlet = await started(broker)
    events = await published(broker, 6)
    stream.receive(events[0])
    stream.receive(events[5])  # 2..5 missed; history keeps only 5 and 6
    epoch = events[0].position.epoch  # type: ignore[union-attr]
    assert await outlet.until(3) == [1, ("gap", epoch, 5, "evicted"), 6]


async def test_a_new_epoch_is_a_gap_notice_then_the_new_epoch_from_its_start() -> None:
    """A reset stream (a new epoch) is told as a gap at its offset 0, then replayed."""
    broker = MemoryBroker()
    stream, outlet = await started(broker)
    stream.receive((await published(broker, 1))[0])
    reset = MemoryBroker()  # the same room, restarted without its history
    stream.reader = reset
    fresh = await published(reset, 3)
    stream.receive(fresh[2])
    epoch = fresh[0].position.epoch  # type: ignore[union-attr]
    assert await outlet.until(5) == [1, ("gap", epoch, 0, "epoch"), 1, 2, 3]


async def test_check_finds_what_was_missed_in_a_room_that_went_quiet() -> None:
    """Publications never heard (a lost subscription) are found by ``check`` alone."""
    broker = MemoryBroker()
    stream, outlet = await started(broker)
    await published(broker, 3)
    stream.check()
    assert await outlet.until(3) == [1, 2, 3]
    stream.check()  # nothing new: nothing delivered twice
    await asyncio.sleep(0.05 * UNIT)
    assert outlet.got == [1, 2, 3]


async def test_publications_before_start_wait_for_the_subscription_position() -> None:
    """What arrives while subscribing is held; what the start position covers is dropped."""
    broker = MemoryBroker()
    outlet = Outlet()
    stream = Stream("r", broker, outlet, stats=collections.Counter())
    events = await published(broker, 3)
    for event in events:
        stream.receive(event)
    assert outlet.got == []
    assert events[1].position is not None
    stream.start(events[1].position)
    assert outlet.got == [3]


async def test_history_that_cannot_be_read_ends_in_a_gap_notice_not_a_silent_skip() -> None:
    """A broker that cannot answer: after a few attempts, a gap notice before the event."""
    broker = MemoryBroker()
    stream, outlet = await started(broker, attempts=2, retry=0.01)
    events = await published(broker, 3)
    stream.receive(events[0])
    stream.reader = RedisBroker("redis://127.0.0.1:1/0")  # never started: Unavailable
    stream.receive(events[2])
    epoch = events[0].position.epoch  # type: ignore[union-attr]
    assert await outlet.until(3) == [1, ("gap", epoch, 2, "unavailable"), 3]


async def test_unnumbered_publications_keep_their_place_behind_a_fill() -> None:
    """Presence or volatile messages that arrive during a fill are not delivered ahead of it."""
    broker = MemoryBroker()
    stream, outlet = await started(broker)
    events = await published(broker, 3)
    volatile = dataclasses.replace(events[0], body=b"v", position=None)
    for publication in (events[0], events[2], volatile):
        stream.receive(publication)
    assert await outlet.until(4) == [1, 2, 3, b"v"]


async def test_close_stops_a_fill() -> None:
    """A room that lost its last member stops: nothing is delivered after close."""

    class Slow(MemoryBroker):
        async def history(self, room: str, since: Position | None, limit: int) -> History:
            await asyncio.sleep(UNIT)
            return await super().history(room, since, limit)

    broker = Slow()
    stream, outlet = await started(MemoryBroker())
    stream.reader = broker
    events = await published(broker, 3)
    stream.position = Position(events[0].position.epoch, 0)  # type: ignore[union-attr]
    stream.receive(events[2])
    stream.close()
    await asyncio.sleep(0.05 * UNIT)
    assert outlet.got == [] and not stream.busy
