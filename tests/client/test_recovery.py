"""Room positions: de-duplication by offset, and events held while a join is in flight."""

from __future__ import annotations

from wirehub.client.recovery import Streams
from wirehub.protocol.messages import Position


def at(offset: int, epoch: str = "e1") -> Position:
    return Position(epoch, offset)


def test_events_are_delivered_once_per_offset() -> None:
    """An offset not greater than the last delivered one (same epoch) is a duplicate."""
    streams: Streams[str] = Streams()
    assert streams.receive("r", at(1), "a") == ["a"]
    assert streams.receive("r", at(2), "b") == ["b"]
    assert streams.receive("r", at(2), "b again") == []
    assert streams.receive("r", at(1), "old") == []
    assert streams.since("r") == at(2)


def test_a_new_epoch_resets_the_position() -> None:
    """Offsets of another epoch are not comparable: the event is delivered."""
    streams: Streams[str] = Streams()
    streams.receive("r", at(5), "a")
    assert streams.receive("r", at(1, "e2"), "b") == ["b"]
    assert streams.since("r") == at(1, "e2")


def test_rooms_are_independent_and_events_without_position_pass() -> None:
    """Each room has its own position; an event without one is never a duplicate."""
    streams: Streams[str] = Streams()
    streams.receive("r", at(3), "a")
    assert streams.receive("s", at(1), "b") == ["b"]
    assert streams.receive("r", None, "c") == ["c"]


def test_held_events_are_released_sorted_and_deduplicated_on_the_ack() -> None:
    """A live event interleaved with the replay comes out once, in offset order."""
    streams: Streams[str] = Streams()
    streams.receive("r", at(2), "seen")
    streams.hold("r")
    assert streams.receive("r", at(5), "live 5") == []
    assert streams.receive("r", at(3), "replay 3") == []
    assert streams.receive("r", at(4), "replay 4") == []
    assert streams.receive("r", at(5), "replay 5") == []
    assert streams.joined("r", at(5)) == ["replay 3", "replay 4", "live 5"]
    assert streams.since("r") == at(5)
    assert streams.receive("r", at(6), "next") == ["next"]


def test_the_ack_position_becomes_the_position() -> None:
    """A join ack newer than any event seen moves the position forward."""
    streams: Streams[str] = Streams()
    streams.hold("r")
    assert streams.joined("r", at(41)) == []
    assert streams.since("r") == at(41)
    assert streams.receive("r", at(41), "old") == []


def test_a_failed_join_releases_what_was_held() -> None:
    """When the join fails, held events are still delivered, in offset order."""
    streams: Streams[str] = Streams()
    streams.hold("r")
    streams.receive("r", at(2), "b")
    streams.receive("r", at(1), "a")
    assert streams.release("r") == ["a", "b"]
    assert streams.receive("r", at(3), "c") == ["c"]


def test_a_lost_connection_releases_every_room() -> None:
    """release_all hands over the held events of every room."""
    streams: Streams[str] = Streams()
    streams.hold("r")
    streams.hold("s")
    streams.receive("r", at(1), "a")
    streams.receive("s", at(1), "b")
    assert streams.release_all() == ["a", "b"]


def test_forget_drops_the_position() -> None:
    """After leaving, the room's next events are new again."""
    streams: Streams[str] = Streams()
    streams.receive("r", at(3), "a")
    streams.forget("r")
    assert streams.since("r") is None
    assert streams.receive("r", at(1), "b") == ["b"]
