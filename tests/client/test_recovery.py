"""Room streams: order, de-duplication, holes, re-joins and the gaps they report (no I/O)."""

from __future__ import annotations

from wirehub.client.events import Gap
from wirehub.client.recovery import Streams
from wirehub.protocol.messages import Position


def at(offset: int, epoch: str = "e1") -> Position:
    return Position(epoch, offset)


class Recorder:
    """A ``recover`` callback: records the rooms that need a re-join."""

    def __init__(self) -> None:
        self.rooms: list[str] = []

    def __call__(self, room: str) -> None:
        self.rooms.append(room)


def streams_at(offset: int, epoch: str = "e1") -> tuple[Streams[str], Recorder]:
    """Streams whose room ``r`` was joined at ``(epoch, offset)``, recovering holes."""
    recorder = Recorder()
    streams: Streams[str] = Streams(recorder)
    streams.hold("r")
    assert streams.joined("r", at(offset, epoch)) == []
    return streams, recorder


def test_events_are_delivered_once_per_offset() -> None:
    """The next offset is delivered; one not greater than the last is a duplicate."""
    streams, recorder = streams_at(0)
    assert streams.receive("r", at(1), "a") == ["a"]
    assert streams.receive("r", at(2), "b") == ["b"]
    assert streams.receive("r", at(2), "b again") == []
    assert streams.receive("r", at(1), "old") == []
    assert streams.since("r") == at(2)
    assert recorder.rooms == []


def test_rooms_are_independent_and_events_without_position_pass() -> None:
    """Each room has its own position; a volatile event passes, even while the room is held."""
    streams, _ = streams_at(3)
    assert streams.receive("s", at(7), "first heard") == ["first heard"]
    streams.hold("r")
    assert streams.receive("r", None, "volatile") == ["volatile"]


def test_a_jump_holds_the_room_and_asks_for_a_rejoin() -> None:
    """Offsets skipped: later events wait; the replay fills the hole, in order, once."""
    streams, recorder = streams_at(1)
    assert streams.receive("r", at(4), "d") == []
    assert recorder.rooms == ["r"]
    assert streams.since("r") == at(1)  # what the re-join asks for
    assert streams.receive("r", at(5), "e") == []
    for offset, item in [(2, "b"), (3, "c"), (4, "d"), (5, "e")]:  # the replay
        assert streams.receive("r", at(offset), item) == []
    assert streams.joined("r", at(5), recovered=True) == ["b", "c", "d", "e"]
    assert streams.receive("r", at(6), "f") == ["f"]


def test_a_jump_that_cannot_be_filled_is_a_gap_before_later_events() -> None:
    """``recovered: false``: the gap comes first, then the events that lead up to the ack."""
    streams, _ = streams_at(1)
    streams.receive("r", at(5), "e")
    streams.receive("r", at(6), "f")
    assert streams.joined("r", at(6), recovered=False) == [
        Gap("r", "jump", at(1), at(4)),
        "e",
        "f",
    ]
    assert streams.receive("r", at(7), "g") == ["g"]


def test_a_gap_covers_up_to_the_ack_when_events_before_it_are_still_missing() -> None:
    """Held events that do not lead up to the ack are covered by the gap, not delivered."""
    streams, _ = streams_at(1)
    streams.receive("r", at(5), "e")
    assert streams.joined("r", at(7), recovered=False) == [Gap("r", "jump", at(1), at(7))]
    assert streams.receive("r", at(7), "late") == []
    assert streams.receive("r", at(8), "h") == ["h"]


def test_a_new_epoch_is_a_gap_and_its_first_events_are_kept() -> None:
    """An event of another epoch: re-join; the old epoch's tail is the gap, the new one goes on."""
    streams, recorder = streams_at(9)
    assert streams.receive("r", at(1, "e2"), "new 1") == []
    assert recorder.rooms == ["r"]
    gap = Gap("r", "epoch", at(9), at(0, "e2"))
    assert streams.joined("r", at(1, "e2"), recovered=False) == [gap, "new 1"]
    assert streams.since("r") == at(1, "e2")


def test_without_recovery_a_hole_is_reported_at_once() -> None:
    """``recover`` None (the client's ``recover=False``): the gap, then the event."""
    streams: Streams[str] = Streams()
    streams.hold("r")
    streams.joined("r", at(2))
    assert streams.receive("r", at(5), "e") == [Gap("r", "jump", at(2), at(4)), "e"]
    assert streams.receive("r", at(1, "e2"), "x") == [Gap("r", "epoch", at(5), at(0, "e2")), "x"]


def test_a_server_notice_is_a_gap_and_moves_the_position() -> None:
    """A ``gap`` notice ahead of the position is reported; one behind it is ignored."""
    streams, recorder = streams_at(3)
    assert streams.notice("r", at(6), "resubscribed") == [
        Gap("r", "server", at(3), at(6), "resubscribed")
    ]
    assert streams.receive("r", at(7), "g") == ["g"]
    assert streams.notice("r", at(5), "stale") == []
    assert recorder.rooms == []


def test_a_notice_while_held_takes_its_place_among_the_events() -> None:
    """Held with a join in flight, a notice is processed at its position, after its event."""
    streams, _ = streams_at(1)
    streams.hold("r")
    streams.receive("r", at(2), "b")
    streams.notice("r", at(4), "lost")
    streams.receive("r", at(5), "e")
    assert streams.joined("r", at(5)) == ["b", Gap("r", "server", at(2), at(4), "lost"), "e"]


def test_a_reconnection_that_cannot_recover_reports_recovery() -> None:
    """The re-join after a reconnection answered ``recovered: false``: reason ``recovery``."""
    streams, _ = streams_at(4)
    streams.hold("r", "recovery")
    assert streams.joined("r", at(9), recovered=False) == [Gap("r", "recovery", at(4), at(9))]
    streams.hold("r", "recovery")
    assert streams.joined("r", at(2, "e2"), recovered=False) == [
        Gap("r", "recovery", at(9), at(2, "e2"))
    ]


def test_a_recovered_rejoin_trusts_the_server_up_to_the_ack() -> None:
    """``recovered: true`` fills the hole even without the sender's own excluded event."""
    streams, recorder = streams_at(1)
    assert streams.receive("r", at(3), "c") == []  # offset 2 was this client's, excluded
    assert streams.joined("r", at(3), recovered=True) == ["c"]
    assert streams.receive("r", at(4), "d") == ["d"]
    assert recorder.rooms == ["r"]


def test_a_second_join_of_a_joined_room_goes_on_from_its_position() -> None:
    """Joining again on the same connection misses nothing: events lagging the ack still count."""
    streams, recorder = streams_at(10)
    streams.hold("r")
    streams.receive("r", at(11), "k")
    assert streams.joined("r", at(12)) == ["k"]
    assert streams.receive("r", at(12), "l") == ["l"]
    assert recorder.rooms == []


def test_an_ack_behind_the_stream_never_moves_it_back() -> None:
    """Two re-joins overlap (a reconnection's, and one a hole asked for): the later ack,
    at a position already passed, must not make the stream deliver an event again."""
    streams, recorder = streams_at(25)
    assert streams.receive("r", at(35), "live 35") == []  # a hole: re-join 1
    streams.hold("r", "recovery")  # the reconnection's re-join 2
    for offset in range(26, 36):  # re-join 1's replay
        streams.receive("r", at(offset), f"{offset}")
    replayed = streams.joined("r", at(35), recovered=True)
    assert replayed == [*(f"{n}" for n in range(26, 35)), "live 35"]
    assert streams.receive("r", at(36), "36") == ["36"]
    assert streams.joined("r", at(35), recovered=True) == []  # re-join 2's ack
    assert streams.since("r") == at(36)
    assert streams.receive("r", at(36), "36 again") == []
    assert streams.receive("r", at(37), "37") == ["37"]
    assert recorder.rooms == ["r"]


def test_a_first_join_delivers_the_replay_in_order_once() -> None:
    """History replay and live events crossing it come out sorted and deduplicated."""
    streams: Streams[str] = Streams()
    streams.hold("r")
    for offset, item in [(5, "live 5"), (3, "replay 3"), (4, "replay 4"), (5, "replay 5")]:
        assert streams.receive("r", at(offset), item) == []
    assert streams.joined("r", at(5)) == ["replay 3", "replay 4", "live 5"]
    assert streams.receive("r", at(6), "next") == ["next"]


def test_a_failed_join_releases_what_was_held_reporting_holes() -> None:
    """When the re-join fails, held events still go out in order, after the gap."""
    streams, _ = streams_at(1)
    assert streams.receive("r", at(3), "c") == []
    streams.receive("r", at(4), "d")
    assert streams.release("r") == [Gap("r", "jump", at(1), at(2)), "c", "d"]


def test_a_lost_connection_keeps_what_follows_and_drops_what_is_past_a_hole() -> None:
    """What is past a hole is left to the recovery after the reconnection."""
    streams, _ = streams_at(1)
    streams.hold("r")
    streams.receive("r", at(2), "b")
    streams.receive("r", at(4), "d")
    assert streams.lost() == ["b"]
    assert streams.since("r") == at(2)
    assert streams.receive("r", at(3), "c") == ["c"]


def test_restart_and_forget_drop_the_position() -> None:
    """After ``restart`` (a join with history) or ``forget`` (leave), old offsets are new again."""
    streams, _ = streams_at(3)
    streams.restart("r")
    assert streams.since("r") is None
    streams.receive("r", at(3), "c")
    streams.forget("r")
    assert streams.receive("r", at(1), "a") == ["a"]
