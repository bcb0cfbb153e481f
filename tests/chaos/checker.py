"""The one checker of the chaos suite: did every member get every event, or hear of a gap?

Pure logic, no I/O. It judges one room, from what the publisher knows of each
publication and what each member's application saw, in the order it saw it.

The rule (issue 10, docs/events.md): for each acknowledged event and each
member, exactly one of

- **delivered** — the event reached the member once, in position order;
- **told** — it did not, but a gap notice (the client's ``gap`` callback)
  covering it arrived before any later event of the room;

and anything else is **silent** (a loss nobody reported). Independently of
that, no event, acknowledged or not, may reach a member twice
(**duplicated**) or after an event it precedes (**out of order**).

Events whose publish failed (``unavailable``) or whose outcome is unknown
(the call timed out, the connection dropped) may be missing, but are held to
the same rules of no duplicates and no disorder.

*Expected* events of a member are the acknowledged ones after it became a
member: the publish started after the member's join was acknowledged, or the
event's position follows the join's position in the same epoch — except those
sent with ``exclude`` naming it (its client gets a ``skip`` marker instead).

*Order*: the publisher is sequential, so an acknowledged event precedes, in
its room's stream, every publication started after it (a larger ``seq``); a
publication of unknown outcome may land anywhere after its start. Within an
epoch, offsets must grow.

*Covered*: a gap notice at log index ``g`` covers expected event ``s`` when
it comes after the member's last delivery of an acknowledged event before
``s`` and before its first delivery of an event after ``s``; and, where the
positions can be compared (same epoch), ``last < s <= position``.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
from collections.abc import Iterable, Sequence

__all__ = [
    "Delivered",
    "Entry",
    "Member",
    "Outcome",
    "Pos",
    "Publication",
    "Told",
    "Verdict",
    "judge",
    "judge_member",
]


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Pos:
    """A stream position: offsets compare only within one epoch."""

    epoch: str
    offset: int


class Outcome(enum.StrEnum):
    """What the publisher learned of one publish."""

    ACKED = "acked"  # the handler's emit returned: the event is in the room's stream
    FAILED = "failed"  # ``unavailable``: the broker could not take it
    UNKNOWN = "unknown"  # timed out, connection lost, other error: maybe published


@dataclasses.dataclass(frozen=True, slots=True)
class Publication:
    """One publish attempt: its sequence number, outcome, position and start time."""

    seq: int
    outcome: Outcome
    position: Pos | None  # from the ack (None: no position given, or not acked)
    started: float  # time.monotonic() when the call was sent
    excluded: str | None = None  # the member it was sent with ``exclude`` for, by name


@dataclasses.dataclass(frozen=True, slots=True)
class Delivered:
    """The member's application received event ``seq`` at ``position``."""

    seq: int
    position: Pos | None


@dataclasses.dataclass(frozen=True, slots=True)
class Told:
    """The member's ``gap`` callback: events after ``last`` up to ``position`` may be missing."""

    last: Pos | None
    position: Pos | None
    reason: str


Entry = Delivered | Told


@dataclasses.dataclass
class Member:
    """What one member saw: when it joined, and its log in the order it happened."""

    name: str
    joined_at: float = float("inf")  # time.monotonic() of the join ack (or welcome)
    joined: Pos | None = None  # the room's position the join was acknowledged at
    log: list[Entry] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Verdict:
    """Counts over members: every expected event is delivered, told or silent."""

    delivered: int = 0
    told: int = 0
    silent: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    notices: int = 0  # gap callbacks received (told counts the events they covered)
    problems: list[str] = dataclasses.field(default_factory=list)  # the first few, to print

    @property
    def ok(self) -> bool:
        return not (self.silent or self.duplicated or self.out_of_order)

    def add(self, other: Verdict) -> None:
        for field in ("delivered", "told", "silent", "duplicated", "out_of_order", "notices"):
            setattr(self, field, getattr(self, field) + getattr(other, field))
        self.problems += other.problems[: max(0, 10 - len(self.problems))]


def judge(publications: Sequence[Publication], members: Iterable[Member]) -> Verdict:
    """Judge every member against the publisher's record; sum the counts."""
    total = Verdict()
    for member in members:
        total.add(judge_member(publications, member))
    return total


def judge_member(publications: Sequence[Publication], member: Member) -> Verdict:
    """Judge one member (see the module docstring for the rules)."""
    by_seq = {p.seq: p for p in publications}
    verdict = Verdict()
    in_order = _check_order(by_seq, member, verdict)
    log = _Log(by_seq, member.log)
    verdict.notices = len(log.notices)
    silent = []
    for publication in publications:
        if not _expected(publication, member):
            continue
        if publication.seq in in_order:
            verdict.delivered += 1
        elif log.covered(publication):
            verdict.told += 1
        else:
            silent.append(publication.seq)
    verdict.silent = len(silent)
    _note(verdict, member.name, "silently missing", silent)
    return verdict


def _expected(publication: Publication, member: Member) -> bool:
    if publication.outcome is not Outcome.ACKED or publication.excluded == member.name:
        return False
    if publication.started >= member.joined_at:
        return True
    joined, position = member.joined, publication.position
    return (
        joined is not None
        and position is not None
        and position.epoch == joined.epoch
        and position.offset > joined.offset
    )


def _check_order(by_seq: dict[int, Publication], member: Member, verdict: Verdict) -> set[int]:
    """Count duplicates and disorder in the member's deliveries; return the seqs in order."""
    in_order: set[int] = set()
    seen: set[int] = set()
    again: list[int] = []
    disorder: list[int] = []
    highest = -1  # the largest seq delivered so far
    offsets: dict[str, int] = {}  # per epoch, the largest offset delivered so far
    for entry in member.log:
        if not isinstance(entry, Delivered):
            continue
        if entry.seq in seen:
            again.append(entry.seq)
            continue
        seen.add(entry.seq)
        publication = by_seq.get(entry.seq)
        acked = publication is not None and publication.outcome is Outcome.ACKED
        position = entry.position
        if (acked and entry.seq < highest) or (
            position is not None and position.offset <= offsets.get(position.epoch, -1)
        ):
            disorder.append(entry.seq)
        else:
            in_order.add(entry.seq)
        highest = max(highest, entry.seq)
        if position is not None:
            offsets[position.epoch] = max(position.offset, offsets.get(position.epoch, -1))
    verdict.duplicated, verdict.out_of_order = len(again), len(disorder)
    _note(verdict, member.name, "delivered again", again)
    _note(verdict, member.name, "out of order", disorder)
    return in_order


class _Log:
    """A member's log indexed for ``covered`` (a bisection per question, not a scan)."""

    def __init__(self, by_seq: dict[int, Publication], log: list[Entry]) -> None:
        self.log = log
        self.running: list[int] = []  # the largest seq delivered up to each delivery
        self.where: list[int] = []  # the log index of each delivery
        self.acked: list[int] = []  # log indexes of deliveries of acknowledged events
        self.notices: list[int] = []  # log indexes of gap notices
        highest = -1
        for index, entry in enumerate(log):
            if isinstance(entry, Told):
                self.notices.append(index)
                continue
            highest = max(highest, entry.seq)
            self.running.append(highest)
            self.where.append(index)
            publication = by_seq.get(entry.seq)
            if publication is not None and publication.outcome is Outcome.ACKED:
                self.acked.append(index)

    def covered(self, publication: Publication) -> bool:
        """Whether a notice covering ``publication`` falls in its window.

        The window opens after the last delivery of an acknowledged event
        before it (only those surely precede it in the stream) and closes at
        the first delivery of any event after it (a larger ``seq``: started
        once it was acknowledged).
        """
        seq = publication.seq
        first_later = bisect.bisect_right(self.running, seq)
        high = self.where[first_later] if first_later < len(self.where) else len(self.log)
        low = -1
        i = bisect.bisect_left(self.acked, high) - 1
        while i >= 0:
            entry = self.log[self.acked[i]]
            assert isinstance(entry, Delivered)
            if entry.seq < seq:
                low = self.acked[i]
                break
            i -= 1  # a copy of ``seq`` itself, delivered out of order
        start = bisect.bisect_right(self.notices, low)
        for index in self.notices[start : bisect.bisect_left(self.notices, high)]:
            notice = self.log[index]
            assert isinstance(notice, Told)
            if _covers(notice, publication.position):
                return True
        return False


def _covers(notice: Told, position: Pos | None) -> bool:
    """Whether the notice's range can contain ``position`` (unknown parts: yes)."""
    if position is None:
        return True
    end, last = notice.position, notice.last
    if end is not None and end.epoch == position.epoch and position.offset > end.offset:
        return False
    return not (
        last is not None and last.epoch == position.epoch and position.offset <= last.offset
    )


def _note(verdict: Verdict, name: str, what: str, seqs: list[int]) -> None:
    """Describe one member's problem as ranges of seqs: ``m3: silently missing 120-135, 140``."""
    if not seqs or len(verdict.problems) >= 10:
        return
    ranges: list[str] = []
    first = previous = seqs[0]
    for seq in [*seqs[1:], None]:
        if seq is not None and seq == previous + 1:
            previous = seq
            continue
        ranges.append(str(first) if first == previous else f"{first}-{previous}")
        if seq is not None:
            first = previous = seq
    verdict.problems.append(f"{name}: {what} {', '.join(ranges)}")
