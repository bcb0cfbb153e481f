"""Rate limits end to end: per peer, per event, abuse closes, per address before the upgrade."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.conftest import UNIT, connect, serve
from tests.hub.wire import WireClient, expect_nothing
from tests.security.conftest import closed_with, handshake_status
from wirehub import Hub, Peer, Timeouts
from wirehub.security import Rate, RateLimits

SLOW = Rate(1, per=3600.0)
"""Effectively no refill during a test: what the burst allows is all there is."""


def limited_hub(limits: RateLimits, **kwargs: Any) -> Hub:
    hub = Hub(rate_limits=limits, **kwargs)
    calls: list[Any] = []
    hub.state = calls  # type: ignore[attr-defined]

    @hub.on("work")
    def work(peer: Peer, data: Any) -> Any:
        calls.append(data)
        return data

    @hub.on("chat")
    def chat(peer: Peer, data: Any) -> Any:
        calls.append(("chat", data))
        return "ok"

    return hub


async def test_message_limit_answers_rate_limited_with_retry_after() -> None:
    """Past the burst, requests get ``rate_limited`` with their id and ``details.retry_after``;
    the handler does not run; the peer stays connected."""
    hub = limited_hub(RateLimits(messages=Rate(3, per=30.0), strikes=None))
    async with serve(hub) as served, await WireClient.open(served.ws("/ws")) as client:
        replies = [await client.call("work", i) for i in range(5)]
        assert [r["type"] for r in replies] == ["ack", "ack", "ack", "error", "error"]
        error = replies[3]
        assert error["code"] == "rate_limited" and error["id"] == 4
        assert 0 < error["details"]["retry_after"] <= 10.0
        await client.send({"type": "emit", "event": "work", "data": "no id"})
        unanswered = await client.recv()
        assert unanswered["code"] == "rate_limited" and "id" not in unanswered
    assert hub.state == [0, 1, 2]  # type: ignore[attr-defined]
    assert hub.stats["rate_limited"] == 3


async def test_garbage_counts_too() -> None:
    """Undecodable messages are counted before decoding: a flood of garbage is limited too."""
    hub = limited_hub(RateLimits(messages=Rate(2, per=30.0), strikes=None))
    async with serve(hub) as served, await WireClient.open(served.ws("/ws")) as client:
        for _ in range(2):
            await client.ws.send("{not json")
            assert (await client.recv())["code"] == "bad_message"
        await client.ws.send("{not json")
        assert (await client.recv())["code"] == "rate_limited"


async def test_byte_limit() -> None:
    """A byte budget: large messages run out of it before small ones would."""
    hub = limited_hub(RateLimits(bytes=Rate(1000, per=30.0), strikes=None))
    async with serve(hub) as served, await WireClient.open(served.ws("/ws")) as client:
        assert (await client.call("work", "x" * 600))["type"] == "ack"
        reply = await client.call("work", "x" * 600)
        assert reply["code"] == "rate_limited" and reply["details"]["retry_after"] > 1


async def test_per_event_override() -> None:
    """``events={"chat": ...}`` limits that event alone; others are not affected."""
    hub = limited_hub(RateLimits(events={"chat": Rate(2, per=30.0)}, strikes=None))
    async with serve(hub) as served, await WireClient.open(served.ws("/ws")) as client:
        chats = [(await client.call("chat", i))["type"] for i in range(4)]
        assert chats == ["ack", "ack", "error", "error"]
        others = [(await client.call("work", i))["type"] for i in range(20)]
        assert others == ["ack"] * 20


async def test_sustained_abuse_closes_4029() -> None:
    """A peer that keeps going past its limits is closed with 4029 and counted."""
    limits = RateLimits(messages=Rate(5, per=30.0), strikes=Rate(3, per=30.0))
    hub = limited_hub(limits, timeouts=Timeouts(close=UNIT / 4))
    async with serve(hub) as served, connect(served.ws("/ws")) as ws:
        for i in range(50):
            await ws.send(json.dumps({"type": "emit", "event": "work", "data": i}))
        # The server stops reading an abuser, so it does not see the client's answer
        # to its close frame: the close timeout ends the TCP connection.
        code, reason = await closed_with(ws, 2 * UNIT)
        assert code == 4029 and "rate limit" in reason
    assert hub.stats["rate_limit_closes"] == 1
    assert hub.state == [0, 1, 2, 3, 4]  # type: ignore[attr-defined]


async def test_limits_are_per_peer() -> None:
    """One peer's exhausted budget does not touch another's."""
    hub = limited_hub(RateLimits(messages=Rate(2, per=30.0), strikes=None))
    async with serve(hub) as served:
        a = await WireClient.open(served.ws("/ws"))
        b = await WireClient.open(served.ws("/ws"))
        for i in range(3):
            await a.call("work", i)
        assert (await b.call("work", "b"))["type"] == "ack"
        await a.close()
        await b.close()


async def test_refill_lets_traffic_resume() -> None:
    """After ``retry_after`` seconds the request passes."""
    hub = limited_hub(RateLimits(messages=Rate(10, burst=1), strikes=None))
    async with serve(hub) as served, await WireClient.open(served.ws("/ws")) as client:
        assert (await client.call("work", 1))["type"] == "ack"
        error = await client.call("work", 2)
        await asyncio.sleep(error["details"]["retry_after"] + 0.02)
        assert (await client.call("work", 3))["type"] == "ack"


async def test_handshake_rate_per_address_is_429_before_the_upgrade() -> None:
    """Too many handshakes from one address: 429 with Retry-After, counted."""
    hub = Hub(rate_limits=RateLimits(handshakes_per_ip=Rate(3, per=60.0)))
    async with serve(hub) as served:
        statuses = [(await handshake_status(served.port))[0] for _ in range(5)]
        assert statuses == [101, 101, 101, 429, 429]
        status, headers = await handshake_status(served.port)
        assert status == 429 and int(headers["retry-after"]) >= 1
    assert hub.stats["refused_rate"] == 3


async def test_open_connections_per_address() -> None:
    """At most N WebSockets per address; closing one frees its slot."""
    hub = Hub(rate_limits=RateLimits(connections_per_ip=2))
    async with serve(hub) as served:
        a = await WireClient.open(served.ws("/ws"))
        b = await WireClient.open(served.ws("/ws"))
        assert (await handshake_status(served.port))[0] == 429
        await a.close()
        for _ in range(int(20 * UNIT)):
            if hub.gate.addresses is not None and hub.gate.addresses.open_count("127.0.0.1") < 2:
                break
            await asyncio.sleep(0.05)
        c = await WireClient.open(served.ws("/ws"))
        await expect_nothing(c)
        await b.close()
        await c.close()


async def test_forwarded_address_counts_only_behind_a_trusted_proxy() -> None:
    """X-Forwarded-For names the client only when the socket peer is a trusted proxy."""
    limits = RateLimits(handshakes_per_ip=Rate(1, per=60.0))
    first, second = "X-Forwarded-For: 10.0.0.1\r\n", "X-Forwarded-For: 10.0.0.2\r\n"
    async with serve(Hub(rate_limits=limits)) as served:
        assert (await handshake_status(served.port, "/ws", first))[0] == 101
        # Not trusted: the header is ignored, so this is the same address again.
        assert (await handshake_status(served.port, "/ws", second))[0] == 429
    async with serve(Hub(rate_limits=limits, trusted_proxies=["127.0.0.1"])) as served:
        assert (await handshake_status(served.port, "/ws", first))[0] == 101
        assert (await handshake_status(served.port, "/ws", second))[0] == 101
        assert (await handshake_status(served.port, "/ws", first))[0] == 429


async def test_ipv6_clients_are_counted_per_64_prefix() -> None:
    """Two addresses of one IPv6 /64 share a bucket (a fresh address per handshake buys nothing);
    another /64 has its own; ``ipv6_prefix=128`` counts each address alone."""

    def forwarded(address: str) -> str:
        return f"X-Forwarded-For: {address}\r\n"

    for prefix, expected in ((64, [101, 429, 101]), (128, [101, 101, 101])):
        limits = RateLimits(handshakes_per_ip=Rate(1, per=60.0), ipv6_prefix=prefix)
        async with serve(Hub(rate_limits=limits, trusted_proxies=["127.0.0.1"])) as served:
            statuses = [
                (await handshake_status(served.port, "/ws", forwarded(address)))[0]
                for address in ("2001:db8:0:1::a", "2001:db8:0:1:ffff::b", "2001:db8:0:2::a")
            ]
        assert statuses == expected, prefix
