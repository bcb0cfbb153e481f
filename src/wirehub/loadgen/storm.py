"""The reconnect storm: many clients lose their connections at once and come back.

N clients sit in rooms of ten. With wirehub's event protocol (``wh``) each
joins its room itself, one publisher per room (the bench contract's
``/ws?ep=fanout&role=pub``) gives every room some history, and each client
tracks its position (epoch, offset). Then every connection drops at
once — all clients abort their sockets (``drop="abort"``: the server stays
up, and the publisher sends more events that the clients miss), or the
server is stopped and started again on the same port (``drop="restart"``:
bench/run.py restarts it and names the new process in ``pid_file``). Each
client reconnects after a jittered backoff and re-joins with ``since``; it is
*recovered* when the join ack says ``recovered: true``, *told of a gap* when
it says ``recovered: false`` or a ``gap`` message came. Peers without
recovery count as *reconnected* once their handshake (Socket.IO: its connect
reply) completes: what they missed meanwhile is lost without a word.

Measured from the drop: time until every client is back, the median, server
CPU per client back (from /proc), arrivals — TCP connections the clients
got — per 100 ms (peak, and peak ÷ mean from the first to the last),
handshakes per 100 ms (peak). The backoff of each dialect is that of its usual client:
``wh`` the wirehub clients' (``wirehub.client.Reconnect``, ``wirehub.js``),
``sio`` Socket.IO's (1 s doubling up to 5 s, ±50 %), ``ws`` the same as
``wh``, so that only the server's cost differs.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import re
import signal
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .client import Conn, Target, client_frame, close_all, connect_many
from .metrics import Window

__all__ = ["BACKOFF", "BUCKET", "RETRY_AFTER", "Backoff", "reconnect_storm"]

BUCKET = 0.1
"""Seconds per bucket of the arrival and handshake counts."""

RETRY_AFTER = re.compile(rb"retry_after=(\d{1,6}(?:\.\d{1,6})?)$")
"""The delay a close reason suggests (wirehub.codes.RETRY_AFTER, which the clients use)."""


@dataclass(frozen=True)
class Backoff:
    """Delay before reconnection attempt ``n``: ``initial * factor**(n-1)`` capped at
    ``maximum``, randomized. ``first_jitter`` is the randomized fraction of the
    first delay, ``jitter`` of the later ones (``low``: the delay is drawn from
    ``[d * (1 - jitter), d]``; Socket.IO's ``symmetric`` one from ``d * (1 ± jitter)``)."""

    initial: float
    factor: float
    maximum: float
    jitter: float
    first_jitter: float
    symmetric: bool = False

    def delay(self, attempt: int, rand: float) -> float:
        base = min(self.initial * self.factor ** min(attempt - 1, 64), self.maximum)
        jitter = self.first_jitter if attempt == 1 else self.jitter
        if self.symmetric:
            return base * (1 + jitter * (2 * rand - 1))
        return base * (1 - jitter * rand)


BACKOFF = {
    # wirehub.client.Reconnect and wirehub.js's RECONNECT_DEFAULTS (a test keeps them equal).
    "wh": Backoff(initial=0.5, factor=2.0, maximum=30.0, jitter=0.5, first_jitter=0.5),
    # socket.io-client and python-socketio: reconnectionDelay 1 s, max 5 s, randomizationFactor 0.5.
    "sio": Backoff(
        initial=1.0, factor=2.0, maximum=5.0, jitter=0.5, first_jitter=0.5, symmetric=True
    ),
}
BACKOFF["ws"] = BACKOFF["wh"]


class Member:
    """One client of the storm: its room, position, attempts and outcome."""

    __slots__ = (
        "attempt",
        "back_at",
        "conn",
        "hinted",
        "outcome",
        "position",
        "room",
        "storm",
    )

    def __init__(self, storm: Storm, room: str) -> None:
        self.storm, self.room = storm, room
        self.position: tuple[str, int] | None = None
        self.conn: StormConn | None = None
        self.attempt = 0
        self.hinted = 0  # 1 once the first attempt waited the server's suggested delay
        self.back_at: float | None = None
        self.outcome = ""  # "" (first connection or not back), "recovered", "gap", "reconnected"

    def request(self) -> bytes:
        target = self.storm.target
        if target.dialect == "wh":
            return target.request("echo")  # not joined by the server: the client joins
        return target.request("fanout", role="sub", room=self.room)

    def join_frame(self) -> bytes:
        message: dict[str, Any] = {"type": "join", "room": self.room, "id": 1}
        if self.position is not None:
            message["since"] = {"epoch": self.position[0], "offset": self.position[1]}
        return client_frame(json.dumps(message, separators=(",", ":")).encode())

    def lost(self, close_payload: bytes = b"") -> None:
        self.conn = None
        storm = self.storm
        if not storm.dropped or storm.finished:
            return
        self.back_at, self.outcome = None, ""
        self.attempt += 1
        hint = RETRY_AFTER.search(close_payload) if storm.target.dialect == "wh" else None
        if hint is not None and self.attempt == 1:
            self.hinted = 1
            delay = float(hint.group(1))  # the server's spread (PROTOCOL.md §6)
        else:
            # After a suggested delay, the backoff starts from its first step.
            delay = storm.backoff.delay(self.attempt - self.hinted, storm.rand())
        storm.loop.call_later(delay * storm.delay_scale, self.reconnect)

    def reconnect(self) -> None:
        if self.storm.finished:
            return
        self.storm.attempts.append(time.perf_counter())
        task = self.storm.loop.create_task(self._open())
        self.storm.tasks.add(task)
        task.add_done_callback(self.storm.tasks.discard)

    async def _open(self) -> None:
        storm = self.storm
        conn = StormConn(self)
        try:
            async with asyncio.timeout(10.0):
                await storm.loop.create_connection(
                    lambda: conn, storm.target.host, storm.target.port
                )
                await conn.ready
        except (OSError, TimeoutError):
            if getattr(conn, "transport", None) is None:
                self.lost()  # refused (the server is down): the next attempt
            else:
                conn.abort()  # cut or too slow: connection_lost makes the next attempt
            return
        if storm.target.dialect != "wh":
            self.back("reconnected" if storm.dropped else "")

    def back(self, outcome: str) -> None:
        if self.back_at is None:
            self.back_at = time.perf_counter()
            self.outcome = outcome
            self.storm.arrived()

    def received(self, payloads: list[bytes]) -> None:
        for data in payloads:
            if b'"type":"event"' in data:
                message = json.loads(data)
                if "offset" in message:
                    self.position = (message["epoch"], message["offset"])
                    self.storm.events += 1
            elif b'"type":"ack"' in data:
                answer = json.loads(data).get("data") or {}
                if "offset" in answer:
                    self.position = (answer["epoch"], answer["offset"])
                if not self.storm.dropped:
                    self.back("")
                else:
                    self.back("gap" if answer.get("recovered") is False else "recovered")
            elif b'"type":"gap"' in data:
                self.storm.gap_notices += 1


class StormConn(Conn):
    """One connection of a ``Member``: reports its 101, its frames and its loss."""

    def __init__(self, member: Member) -> None:
        target = member.storm.target
        super().__init__(
            member.request(),
            target.dialect == "sio",
            self._frames,
            keep_payloads=target.dialect == "wh",
            welcome=target.dialect == "wh",
        )
        self.member = member
        if target.dialect == "wh":  # the join goes with the handshake: served after the welcome
            self.request += member.join_frame()

    def connection_made(self, transport: Any) -> None:
        self.member.storm.arrivals.append(time.perf_counter())
        self.member.conn = self
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        upgraded = self.upgraded
        super().data_received(data)
        if self.upgraded and not upgraded:
            self.member.storm.handshakes.append(time.perf_counter())

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.member.conn is self:
            self.member.lost(self.close_payload)

    def abort(self) -> None:
        transport = getattr(self, "transport", None)
        if transport is not None:
            transport.abort()

    @staticmethod
    def _frames(conn: Conn, count: int, payloads: list[bytes] | None) -> None:
        assert isinstance(conn, StormConn)
        if payloads:
            conn.member.received(payloads)


class Storm:
    """The members, the clock and the counters of one storm."""

    def __init__(self, target: Target, backoff: Backoff, seed: int) -> None:
        self.target, self.backoff = target, backoff
        self.loop = asyncio.get_running_loop()
        self.rand = random.Random(seed).random
        self.members: list[Member] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.attempts: list[float] = []
        self.arrivals: list[float] = []
        self.handshakes: list[float] = []
        self.dropped = False
        self.finished = False
        self.events = 0
        self.gap_notices = 0
        self.waiting = 0
        self.delay_scale = 1.0
        self.all_back: asyncio.Future[None] = self.loop.create_future()

    def arrived(self) -> None:
        self.waiting -= 1
        if self.waiting <= 0 and not self.all_back.done():
            self.all_back.set_result(None)

    def expect(self, count: int) -> None:
        self.waiting = count
        self.all_back = self.loop.create_future()

    def stop(self) -> None:
        self.finished = True
        for task in self.tasks:
            task.cancel()
        close_all([m.conn for m in self.members if m.conn is not None])


async def reconnect_storm(target: Target, pid: int, p: dict[str, Any]) -> dict[str, Any]:
    """N clients in rooms with history lose their connections at once (``drop``) and
    come back with jittered backoff, re-joining with ``since``."""
    storm = Storm(target, BACKOFF[target.dialect], seed=p.get("seed", 7))
    storm.delay_scale = p["delay_scale"]  # < 1 only in --quick: a smoke test, not a measure
    clients, per_room = p["clients"], p["members"]
    storm.members = [Member(storm, f"r{i // per_room}") for i in range(clients)]
    publishers: list[Conn] = []
    try:
        storm.expect(clients)
        await _open_all(storm, p["concurrency"])
        if not await _wait_back(storm, p["timeout"]):
            raise RuntimeError("not every client joined before the storm")
        rooms = sorted({m.room for m in storm.members})
        if target.dialect == "wh":
            publishers = await _publishers(storm, rooms)
            _publish(target, publishers, p["history"])
            await _delivered(storm, clients * p["history"])
        drop_pid, restart_s = pid, None
        storm.expect(clients)
        storm.dropped = True
        t0 = time.perf_counter()
        if p["drop"] == "restart":
            os.kill(pid, signal.SIGTERM)  # bench/run.py starts it again on the same port
            pid, cpu0 = await _restarted(p["pid_file"], drop_pid, p["timeout"])
            restart_s = time.perf_counter() - t0
        else:
            for member in storm.members:
                if member.conn is not None:
                    member.conn.abort()
        window = Window(pid).start()
        if p["drop"] == "restart":
            window.server0 = cpu0  # the new process's CPU since it started listening
        if p["drop"] == "abort":
            _publish(
                target, publishers, p["missed"]
            )  # missed by every member: recovery replays them
        complete = await _wait_back(storm, p["timeout"], p["stall"])
        out = window.stop(sum(1 for m in storm.members if m.back_at is not None))
        out.update(_storm_metrics(storm, t0, clients, complete))
        out.update(server_pid_after=pid, down_s=restart_s)
        return out
    finally:
        storm.stop()
        close_all(publishers)
        await asyncio.sleep(0.1)


async def _open_all(storm: Storm, concurrency: int) -> None:
    """Open every member's first connection, at most ``concurrency`` at a time."""
    pending = list(reversed(storm.members))

    async def worker() -> None:
        while pending:
            member = pending.pop()
            conn = StormConn(member)
            await storm.loop.create_connection(
                functools.partial(_same, conn), storm.target.host, storm.target.port
            )
            await asyncio.wait_for(conn.ready, 10.0)
            if storm.target.dialect != "wh":
                member.back("")

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(pending)))))


def _same(conn: StormConn) -> StormConn:
    return conn


async def _wait_back(storm: Storm, timeout: float, stall: float | None = None) -> bool:
    """Wait until every expected member is back; False after ``timeout`` (or ``stall``
    seconds without one coming back)."""
    deadline = time.perf_counter() + timeout
    seen, since = storm.waiting, time.perf_counter()
    while not storm.all_back.done():
        await asyncio.wait([storm.all_back], timeout=0.1)
        now = time.perf_counter()
        if storm.waiting != seen:
            seen, since = storm.waiting, now
        if now > deadline or (stall is not None and now - since > stall):
            return storm.all_back.done()
    return True


async def _publishers(storm: Storm, rooms: list[str]) -> list[Conn]:
    """One publisher per room (the bench contract's ``/ws?ep=fanout&role=pub&room=R``)."""
    target = storm.target
    return await connect_many(
        target, len(rooms), lambda i: target.request("fanout", role="pub", room=rooms[i])
    )


def _publish(target: Target, publishers: list[Conn], per_room: int) -> None:
    frame = target.message(b"x" * 48)  # an emit of event "m": to the publisher's room
    for publisher in publishers:
        publisher.send(frame * per_room)


async def _delivered(storm: Storm, expected: int) -> None:
    """Wait until the members have ``expected`` room events in all (their history)."""
    deadline = time.perf_counter() + 30.0
    while storm.events < expected:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"history: {storm.events} of {expected} events delivered")
        await asyncio.sleep(0.02)


async def _restarted(pid_file: str, old: int, timeout: float) -> tuple[int, float]:
    """The restarted server's pid and its CPU seconds when it began listening (from
    ``pid_file``, written by bench/run.py)."""
    if not pid_file:
        raise RuntimeError("drop=restart needs a supervisor: run it with bench/run.py")
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            pid_text, cpu_text = open(pid_file).read().split()  # noqa: SIM115 - tiny
            if int(pid_text) != old:
                return int(pid_text), float(cpu_text)
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.01)
    raise RuntimeError("the server was not restarted in time")


def _storm_metrics(storm: Storm, t0: float, clients: int, complete: bool) -> dict[str, Any]:
    back = sorted(m.back_at - t0 for m in storm.members if m.back_at is not None)
    outcomes = Counter(m.outcome for m in storm.members if m.back_at is not None)
    arrivals = _buckets(storm.arrivals, t0)
    handshakes = _buckets(storm.handshakes, t0)
    mean = statistics.fmean(arrivals) if arrivals else 0.0
    return {
        "complete": complete,
        "clients": clients,
        "recover_all_s": back[-1] if back else None,
        "recover_p50_s": statistics.median(back) if back else None,
        "recovered": outcomes["recovered"],
        "told_gap": outcomes["gap"],
        "reconnected_unaware": outcomes["reconnected"],
        "not_back": clients - len(back),
        "gap_notices": storm.gap_notices,
        "attempts": len([t for t in storm.attempts if t >= t0]),
        "arrivals": sum(arrivals),
        "arrival_peak_per_100ms": max(arrivals, default=0),
        "arrival_peak_to_mean": max(arrivals) / mean if mean else None,
        "handshake_peak_per_100ms": max(handshakes, default=0),
        "arrivals_per_100ms": arrivals,
        "handshakes_per_100ms": handshakes,
        "delivered_pct": round(100 * len(back) / clients, 1),
    }


def _buckets(times: list[float], t0: float) -> list[int]:
    """Counts per ``BUCKET`` from the first to the last event after ``t0``."""
    after = [t - t0 for t in times if t >= t0]
    if not after:
        return []
    first = int(min(after) / BUCKET)
    counts = Counter(int(t / BUCKET) - first for t in after)
    return [counts.get(i, 0) for i in range(max(counts) + 1)]
