"""The chaos checker on hand-made logs: each rule, and each way to break it."""

from __future__ import annotations

from tests.chaos.checker import (
    Delivered,
    Member,
    Outcome,
    Pos,
    Publication,
    Told,
    Verdict,
    judge,
    judge_member,
)

ACKED, FAILED, UNKNOWN = Outcome.ACKED, Outcome.FAILED, Outcome.UNKNOWN


def stream(outcomes: str, epoch: str = "e1") -> list[Publication]:
    """Publications 1..n from a string: ``a`` acked, ``f`` failed, ``u`` unknown.

    Acked ones get the next offset; the others none.
    """
    publications, offset = [], 0
    for seq, kind in enumerate(outcomes, start=1):
        outcome = {"a": ACKED, "f": FAILED, "u": UNKNOWN}[kind]
        position = None
        if outcome is ACKED:
            offset += 1
            position = Pos(epoch, offset)
        publications.append(Publication(seq, outcome, position, started=float(seq)))
    return publications


def got(publications: list[Publication], *seqs: int) -> list[Delivered]:
    """Deliveries of ``seqs`` at the positions the publisher was told."""
    by_seq = {p.seq: p for p in publications}
    return [Delivered(seq, by_seq[seq].position) for seq in seqs]


def member(*log: Delivered | Told, joined_at: float = 0.0, joined: Pos | None = None) -> Member:
    return Member("m", joined_at, joined, list(log))


def counts(verdict: Verdict) -> tuple[int, int, int, int, int]:
    v = verdict
    return (v.delivered, v.told, v.silent, v.duplicated, v.out_of_order)


def test_everything_delivered_once_in_order() -> None:
    pubs = stream("aaaa")
    assert counts(judge_member(pubs, member(*got(pubs, 1, 2, 3, 4)))) == (4, 0, 0, 0, 0)


def test_an_event_that_excluded_the_member_is_not_owed_to_it() -> None:
    pubs = stream("aaa")
    pubs[1] = Publication(2, ACKED, pubs[1].position, 2.0, excluded="m")
    assert counts(judge_member(pubs, member(*got(pubs, 1, 3)))) == (2, 0, 0, 0, 0)


def test_a_missing_event_is_silent() -> None:
    pubs = stream("aaaa")
    verdict = judge_member(pubs, member(*got(pubs, 1, 2, 4)))
    assert counts(verdict) == (3, 0, 1, 0, 0)
    assert verdict.problems == ["m: silently missing 3"] and not verdict.ok


def test_a_gap_notice_before_the_next_event_tells() -> None:
    pubs = stream("aaaa")
    gap = Told(Pos("e1", 2), Pos("e1", 3), "server")
    verdict = judge_member(pubs, member(*got(pubs, 1, 2), gap, *got(pubs, 4)))
    assert counts(verdict) == (3, 1, 0, 0, 0) and verdict.ok and verdict.notices == 1


def test_a_gap_notice_after_a_later_event_is_too_late() -> None:
    pubs = stream("aaaa")
    gap = Told(Pos("e1", 2), Pos("e1", 3), "server")
    assert counts(judge_member(pubs, member(*got(pubs, 1, 2, 4), gap))) == (3, 0, 1, 0, 0)


def test_a_gap_notice_before_an_earlier_event_does_not_cover_later_ones() -> None:
    pubs = stream("aaaa")
    gap = Told(None, None, "recovery")
    assert counts(judge_member(pubs, member(gap, *got(pubs, 1, 2, 4)))) == (3, 0, 1, 0, 0)


def test_a_gap_notice_covers_only_its_range_in_the_same_epoch() -> None:
    pubs = stream("aaaaa")
    short = Told(Pos("e1", 2), Pos("e1", 3), "jump")  # 4 is beyond it
    log = member(*got(pubs, 1, 2), short, *got(pubs, 5))
    assert counts(judge_member(pubs, log)) == (3, 1, 1, 0, 0)
    behind = Told(Pos("e1", 4), Pos("e1", 4), "jump")  # claims 3 was processed
    log = member(*got(pubs, 1, 2), behind, *got(pubs, 4, 5))
    assert counts(judge_member(pubs, log)) == (4, 0, 1, 0, 0)


def test_a_gap_notice_in_another_epoch_covers_the_old_one() -> None:
    pubs = stream("aaa")
    after_restart = Publication(4, ACKED, Pos("e2", 1), 4.0)
    gap = Told(Pos("e1", 1), Pos("e2", 0), "epoch")
    log = member(*got(pubs, 1), gap, Delivered(4, Pos("e2", 1)))
    assert counts(judge_member([*pubs, after_restart], log)) == (2, 2, 0, 0, 0)


def test_a_trailing_loss_is_told_only_by_a_notice_after_the_last_event() -> None:
    pubs = stream("aaa")
    assert counts(judge_member(pubs, member(*got(pubs, 1)))) == (1, 0, 2, 0, 0)
    tail = Told(Pos("e1", 1), Pos("e1", 3), "recovery")
    assert counts(judge_member(pubs, member(*got(pubs, 1), tail))) == (1, 2, 0, 0, 0)


def test_a_duplicate_fails_even_with_a_notice() -> None:
    pubs = stream("aaa")
    gap = Told(None, None, "recovery")
    verdict = judge_member(pubs, member(*got(pubs, 1, 2), gap, *got(pubs, 2, 3)))
    assert counts(verdict) == (3, 0, 0, 1, 0) and not verdict.ok
    assert verdict.problems == ["m: delivered again 2"]


def test_a_copy_without_position_is_a_duplicate() -> None:
    """The local-only copy of a publish that Redis applied after all (issue 10)."""
    pubs = stream("aaa")
    log = member(*got(pubs, 1), Delivered(2, None), *got(pubs, 2, 3))
    assert counts(judge_member(pubs, log)) == (3, 0, 0, 1, 0)


def test_an_acked_event_after_a_later_one_is_out_of_order() -> None:
    pubs = stream("aaaa")
    verdict = judge_member(pubs, member(*got(pubs, 1, 3, 2, 4)))
    assert counts(verdict) == (3, 0, 1, 0, 1) and not verdict.ok


def test_offsets_going_back_in_an_epoch_are_out_of_order() -> None:
    """Two events at one offset (a position reused after a Redis restart with AOF)."""
    pubs = stream("aa")
    log = member(Delivered(1, Pos("e1", 1)), Delivered(2, Pos("e1", 1)))
    assert counts(judge_member(pubs, log)) == (1, 0, 1, 0, 1)


def test_failed_and_unknown_events_may_be_missing() -> None:
    pubs = stream("afua")
    assert counts(judge_member(pubs, member(*got(pubs, 1, 4)))) == (2, 0, 0, 0, 0)


def test_an_unknown_event_may_land_after_later_ones_but_never_twice() -> None:
    """A publish that timed out may still be applied, after the ones that followed it."""
    pubs = stream("auaa")
    late = Delivered(2, Pos("e1", 4))
    assert counts(judge_member(pubs, member(*got(pubs, 1, 3, 4), late))) == (3, 0, 0, 0, 0)
    verdict = judge_member(pubs, member(*got(pubs, 1), Delivered(2, None), *got(pubs, 3, 4), late))
    assert counts(verdict) == (3, 0, 0, 1, 0)


def test_a_member_expects_what_follows_its_join() -> None:
    pubs = stream("aaaaaa")
    # Joined after event 3 was published (by time), at position 3.
    late = member(*got(pubs, 4, 6), joined_at=3.5, joined=Pos("e1", 3))
    assert counts(judge_member(pubs, late)) == (2, 0, 1, 0, 0)
    # Acknowledged at position 2 while event 3 was in flight: 3 is owed too.
    early = member(*got(pubs, 4, 5, 6), joined_at=3.5, joined=Pos("e1", 2))
    assert counts(judge_member(pubs, early)) == (3, 0, 1, 0, 0)


def test_judge_sums_members() -> None:
    pubs = stream("aaa")
    verdict = judge(pubs, [member(*got(pubs, 1, 2, 3)), member(*got(pubs, 1, 3))])
    assert counts(verdict) == (5, 0, 1, 0, 0)
