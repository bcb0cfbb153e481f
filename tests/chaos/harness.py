"""The chaos harness: members in a room, one sequential publisher, and the run of one fault.

A run connects ``MEMBERS`` auto-reconnecting ``wirehub.Client``\\ s to the
nodes (half join with a ``join`` request, half through the connect handler;
member 1, behind the proxy where there is one, by a handler's server-side join),
starts the publisher at ``RATE`` acknowledged events per second (every
``EXCLUDE``-th one sent with ``exclude`` naming a member in turn), waits until
every member hears it, lets the test inject its fault, waits until every
member hears events published after the fault, stops the publisher, waits
for the last event everywhere, and hands every member's log to the checker
(tests/chaos/checker.py). Nothing here sleeps to let things happen: each
wait is for a condition, with a deadline in ``UNIT``\\ s; the one timed
sleep paces the publisher.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tests.chaos import checker
from tests.chaos.checker import Outcome, Pos, Verdict
from tests.conftest import UNIT, http
from wirehub import Client
from wirehub.client.events import EventInfo, Gap
from wirehub.client.reconnect import Reconnect
from wirehub.exceptions import CallError, CallTimeout, ConnectionClosed
from wirehub.protocol.messages import Position

__all__ = [
    "EXCLUDE",
    "MEMBERS",
    "RATE",
    "RESULTS",
    "ROOM",
    "TIMEOUT",
    "WAIT",
    "Member",
    "Publisher",
    "Result",
    "Run",
    "check",
    "health",
    "until",
]

ROOM = "chaos"
MEMBERS = 20
RATE = 250  # publications per second, one at a time
EXCLUDE = 3  # every third publication excludes one member (the members in turn)
TIMEOUT = 0.5 * UNIT  # the nodes' Redis command timeout (WIREHUB_CHAOS_TIMEOUT)
WAIT = 10 * UNIT  # the longest any condition may take to come true
WARM = 25  # events every member must hear before the fault
AFTER = 25  # events every member must hear that were published after the fault
CALL_TIMEOUT = 10 * UNIT  # the publisher's: longer than anything the nodes wait for

MEMBER_RECONNECT = Reconnect(initial_delay=0.05 * UNIT, max_delay=0.5 * UNIT)
PUBLISHER_RECONNECT = Reconnect(initial_delay=0.02 * UNIT, max_delay=0.1 * UNIT)


@dataclasses.dataclass
class Result:
    """One row of the chaos table."""

    broker: str
    fault: str
    published: dict[Outcome, int]
    rate: float  # publish attempts per second, first to last
    verdict: Verdict
    ok: bool  # the verdict's, and every member caught up
    seconds: float


RESULTS: list[Result] = []
"""Every run's row, printed as a table at the end of the session (tests/chaos/conftest.py)."""


async def until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = WAIT
) -> None:
    """Poll ``condition`` (state another process or thread holds, e.g. a node's health)
    until it is true; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.1f}s")
        await asyncio.sleep(0.01)


async def health(port: int) -> dict[str, Any]:
    """A node's ``/healthz`` report."""
    response = await http(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    report: dict[str, Any] = json.loads(response.body)
    return report


def _pos(position: Position | None) -> Pos | None:
    return None if position is None else Pos(position.epoch, position.offset)


class Member:
    """One auto-reconnecting client in the room; records what its application sees, in order."""

    def __init__(
        self, name: str, url: str, *, join_on_connect: bool, join_by_handler: bool = False
    ) -> None:
        self.record = checker.Member(name)
        self.join_on_connect = join_on_connect
        self.join_by_handler = join_by_handler
        self.highest = -1  # the largest seq delivered
        self.told: Pos | None = None  # the position of the latest gap notice
        self.disconnects = 0
        self.pid: int | None = None  # the process serving it, when asked (``whoami``)
        self._waiters: list[tuple[int, Pos | None, asyncio.Future[None]]] = []
        self.client = Client(
            f"{url}?join={ROOM}" if join_on_connect else url,
            reconnect=MEMBER_RECONNECT,
            call_timeout=CALL_TIMEOUT,
            open_timeout=WAIT,
            ping_interval=None,
        )
        self.client.on("tick", self._tick)
        self.client.on("gap", self._gap)
        self.client.on("disconnect", self._disconnected)

    async def start(self) -> None:
        """Connect and become a member (by the connect handler, a handler's server-side
        join, or a join request)."""
        await self.client.connect()
        joined: Position | None
        if self.join_by_handler:
            await self.client.call("enter", ROOM)
            assert ROOM in self.client.rooms  # its ``joined`` came before the call's ack
            joined = None  # owed what is published from the ack on
        elif self.join_on_connect:
            assert self.client.welcome is not None
            joined = self.client.welcome.rooms.get(ROOM)
        else:
            ack = await self.client.join(ROOM)
            joined = Position(str(ack["epoch"]), int(ack["offset"]))
        self.record.joined_at = time.monotonic()  # after the ack: the member is owed what follows
        self.record.joined = _pos(joined)

    async def whoami(self) -> int:
        self.pid = int(await self.client.call("whoami"))
        return self.pid

    async def reached(self, seq: int, position: Pos | None = None) -> None:
        """Wait until an event with a sequence number of at least ``seq`` was delivered,
        or a gap notice reached ``position`` (the event's, when known)."""
        if self._reached(seq, position):
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, position, future))
        await future

    def _reached(self, seq: int, position: Pos | None) -> bool:
        told = self.told
        return self.highest >= seq or (
            position is not None
            and told is not None
            and told.epoch == position.epoch
            and told.offset >= position.offset
        )

    def _wake(self) -> None:
        for waiter in [w for w in self._waiters if self._reached(w[0], w[1])]:
            self._waiters.remove(waiter)
            if not waiter[2].done():
                waiter[2].set_result(None)

    def _tick(self, data: dict[str, Any], info: EventInfo) -> None:
        seq = int(data["seq"])
        position = None
        if info.epoch is not None and info.offset is not None:
            position = Pos(info.epoch, info.offset)
        self.record.log.append(checker.Delivered(seq, position))
        if seq > self.highest:
            self.highest = seq
            self._wake()

    def _gap(self, gap: Gap) -> None:
        if gap.room == ROOM:
            self.record.log.append(checker.Told(_pos(gap.last), _pos(gap.position), gap.reason))
            self.told = _pos(gap.position)
            self._wake()

    def _disconnected(self) -> None:
        self.disconnects += 1


class Publisher:
    """One client publishing numbered events one at a time, paced at ``rate`` per second."""

    def __init__(self, url: str, *, rate: float = RATE) -> None:
        self.rate = rate
        self.publications: list[checker.Publication] = []
        self.exclude: Callable[[int], tuple[str, str] | None] = lambda seq: None
        """For a seq: the member to exclude, by name and current peer id (None: nobody)."""
        self.client = Client(
            url,
            reconnect=PUBLISHER_RECONNECT,
            call_timeout=CALL_TIMEOUT,
            open_timeout=WAIT,
            ping_interval=None,
        )
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._progress = asyncio.Event()
        self.client.on("connect", self._connected.set)
        self.client.on("disconnect", self._connected.clear)
        self._task: asyncio.Task[None] | None = None

    @property
    def attempts(self) -> int:
        return len(self.publications)

    def last_acked(self, member: str | None = None) -> int:
        """The last acknowledged seq (of those that did not exclude ``member``)."""
        acked = [
            p.seq
            for p in self.publications
            if p.outcome is Outcome.ACKED and (member is None or p.excluded != member)
        ]
        return acked[-1] if acked else 0

    async def start(self) -> None:
        await self.client.connect()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish the publish in flight, then stop."""
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()

    async def published(self, count: int) -> None:
        """Wait until ``count`` more publishes were attempted (whatever their outcome)."""
        target = self.attempts + count
        async with asyncio.timeout(WAIT):
            while self.attempts < target:
                self._progress.clear()
                await self._progress.wait()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        begin, seq = loop.time(), 0
        while not self._stopping.is_set():
            seq += 1
            delay = begin + seq / self.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.1:  # held up (a fault): go on at the rate, no burst to catch up
                begin -= delay
            if not self._connected.is_set() and not await self._reconnected():
                return
            self.publications.append(await self._publish(seq))
            self._progress.set()

    async def _reconnected(self) -> bool:
        """Wait for the client to reconnect; False if told to stop first."""
        waits = [asyncio.ensure_future(e.wait()) for e in (self._connected, self._stopping)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return not self._stopping.is_set()

    async def _publish(self, seq: int) -> checker.Publication:
        started = time.monotonic()
        data: dict[str, Any] = {"room": ROOM, "seq": seq}
        excluded = self.exclude(seq)
        if excluded is not None:
            data["exclude"] = excluded[1]
        position = None
        try:
            ack = await self.client.call("publish", data)
        except CallError as exc:
            lost = (exc.details or {}).get("outcome") == "unknown"  # the broker's reply was lost
            outcome = Outcome.FAILED if exc.code == "unavailable" and not lost else Outcome.UNKNOWN
        except (CallTimeout, ConnectionClosed):
            outcome = Outcome.UNKNOWN
        else:
            outcome = Outcome.ACKED
            if ack is not None:
                position = Pos(str(ack["epoch"]), int(ack["offset"]))
        name = None if excluded is None else excluded[0]
        return checker.Publication(seq, outcome, position, started, name)


class Run:
    """One fault under load: ``async with Run(...) as run:`` then ``await run.warm()``,
    the fault, ``await run.settle()``; ``check(run)`` after the block.

    ``member_urls[i]`` is where member ``i`` connects; members whose index is
    in ``late`` connect only when the test calls ``join_late()``.
    """

    def __init__(
        self,
        broker: str,
        fault: str,
        publisher_url: str,
        member_urls: Sequence[str],
        *,
        late: Sequence[int] = (),
    ) -> None:
        self.broker, self.fault = broker, fault
        self.publisher = Publisher(publisher_url)
        self.members = [
            Member(f"m{i}", url, join_on_connect=(i // 2) % 2 == 1, join_by_handler=i == 1)
            for i, url in enumerate(member_urls)
        ]
        self.late = [self.members[i] for i in late]
        self.publisher.exclude = self._excluded
        self.began = 0.0
        self.waits: list[str] = []  # members that did not catch up in time

    async def __aenter__(self) -> Run:
        self.began = time.monotonic()
        try:
            await asyncio.gather(*(m.start() for m in self.members if m not in self.late))
            await self.publisher.start()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _close(self) -> None:
        await self.publisher.close()
        await asyncio.gather(*(m.client.close() for m in self.members))

    async def warm(self) -> None:
        """Wait until every member (late ones aside) heard the first ``WARM`` events."""
        await self._all_reach([m for m in self.members if m not in self.late], WARM)

    async def join_late(self) -> None:
        """Connect the late members, all at once."""
        await asyncio.gather(*(m.start() for m in self.late))

    async def settle(self) -> None:
        """Let every member hear what follows the fault, then stop and let the last arrive."""
        mark = self.publisher.attempts + 1
        await self.publisher.published(AFTER)
        await self._all_reach(self.members, mark + AFTER)
        await self.finish()

    async def finish(self) -> None:
        """Stop the publisher and let the last event arrive (or a gap notice reach it)."""
        await self.publisher.stop()
        await self._all_reach(self.members)

    def _excluded(self, seq: int) -> tuple[str, str] | None:
        if seq % EXCLUDE:
            return None
        member = self.members[seq // EXCLUDE % len(self.members)]
        welcome = member.client.welcome  # None before a late member connects
        return None if welcome is None else (member.record.name, welcome.peer)

    async def _all_reach(self, members: list[Member], seq: int | None = None) -> None:
        """Wait until each member heard event ``seq`` or a later one (None: the last
        acknowledged one it is owed, once the publisher stopped, or a gap notice past it)."""
        targets = {
            m: self.publisher.last_acked(m.record.name) if seq is None else seq for m in members
        }
        positions = {p.seq: p.position for p in self.publisher.publications} if seq is None else {}
        try:
            async with asyncio.timeout(WAIT):
                await asyncio.gather(
                    *(m.reached(targets[m], positions.get(targets[m])) for m in members)
                )
        except TimeoutError:
            behind = [f"{m.record.name} ({targets[m]})" for m in members if m.highest < targets[m]]
            self.waits.append(f"{', '.join(behind)} never reached their event")

    def judge(self) -> Result:
        """Judge every member; record and return the table row."""
        verdict = checker.judge(self.publisher.publications, [m.record for m in self.members])
        publications = self.publisher.publications
        published = {outcome: 0 for outcome in Outcome}
        for publication in publications:
            published[publication.outcome] += 1
        span = publications[-1].started - publications[0].started if publications else 0.0
        rate = (len(publications) - 1) / span if span else 0.0
        seconds = time.monotonic() - self.began
        ok = verdict.ok and not self.waits
        result = Result(self.broker, self.fault, published, rate, verdict, ok, seconds)
        RESULTS.append(result)
        return result


def check(run: Run) -> None:
    """Judge ``run``; fail on any silent loss, duplicate or disorder, or a member that never
    caught up (the system did not recover), saying which."""
    result = run.judge()
    verdict = result.verdict
    assert result.ok, "\n".join(
        [
            f"silent {verdict.silent}, duplicated {verdict.duplicated}, "
            f"out of order {verdict.out_of_order} (delivered {verdict.delivered}, "
            f"told {verdict.told})",
            *verdict.problems,
            *run.waits,
        ]
    )
