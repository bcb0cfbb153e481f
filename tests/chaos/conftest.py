"""The chaos table: one row per fault, printed at the end of the session.

Columns: the publisher's attempts by outcome and their rate; then, summed over
members, the acknowledged events each was owed that it got once in order
(delivered), that a gap notice covered (told), that it neither got nor was
told of (silent); copies of an event (duplicated), events after one they
precede (out of order), gap callbacks (notices); whether the checker
passed; the run's seconds (processes' start and stop aside).
"""

from __future__ import annotations

import pytest

from tests.chaos.checker import Outcome
from tests.chaos.harness import RESULTS

COLUMNS = (
    "broker",
    "fault",
    "acked/failed/unknown",
    "per s",
    "delivered",
    "told",
    "silent",
    "duplicated",
    "out of order",
    "notices",
    "ok",
    "s",
)


def table() -> list[str]:
    """The results as a Markdown table (also pasted into docs/scaling.md)."""
    rows = [COLUMNS, tuple("---" for _ in COLUMNS)]
    for r in RESULTS:
        v, p = r.verdict, r.published
        rows.append(
            (
                r.broker,
                r.fault,
                f"{p[Outcome.ACKED]}/{p[Outcome.FAILED]}/{p[Outcome.UNKNOWN]}",
                f"{r.rate:.0f}",
                str(v.delivered),
                str(v.told),
                str(v.silent),
                str(v.duplicated),
                str(v.out_of_order),
                str(v.notices),
                "yes" if r.ok else "NO",
                f"{r.seconds:.1f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section("chaos: every member, every acknowledged event")
        for line in table():
            terminalreporter.write_line(line)
