"""Tokens, refresh and rate limits over the HTTP fallback: the same answers as a WebSocket's."""

from __future__ import annotations

import aiohttp

from tests.conftest import UNIT, serve
from tests.hub.fallback_wire import PollClient, text
from tests.security.conftest import plain_token
from tests.security.test_tokens import LEAD, token_hub
from wirehub import Hub, Peer
from wirehub.security.ratelimit import Rate, RateLimits


async def test_tokens_in_the_header_or_the_first_record() -> None:
    """A session opens with a token in ``Authorization: Bearer`` or in a first ``auth``
    record of its opening body; a bad one in the header is refused with 401 before any
    session exists, a missing one closes the session with 4001."""
    hub = token_hub()
    async with serve(hub) as served:
        base = f"{served.url}/ws"
        headers = {"Authorization": "Bearer ada"}
        async with await PollClient.open(base, headers=headers) as client:
            assert (await client.call("whoami"))["data"] == {"sub": "ada"}
        first = text({"type": "auth", "token": "bob"})
        async with await PollClient.open(base, body=first) as client:
            assert (await client.call("whoami"))["data"] == {"sub": "bob"}
        async with aiohttp.ClientSession() as http:
            bad = await http.post(f"{base}/open", headers={"Authorization": "Bearer bad"})
            assert bad.status == 401 and "bearer" in bad.headers["www-authenticate"].lower()
        body = text({"type": "ping", "id": 1})
        async with await PollClient.open(base, body=body, welcome=False) as client:
            assert (await client.wait_closed())[0] == 4001
    assert hub.state == [{"sub": "ada"}, {"sub": "bob"}]  # type: ignore[attr-defined]


async def test_refresh_over_the_fallback() -> None:
    """The server's ``refresh`` arrives as a record; an ``auth`` with a new token is acked and
    the session outlives the first token; a token for another subject closes it with 4003."""
    ttl = 3 * LEAD
    async with serve(token_hub()) as served:
        first = text({"type": "auth", "token": plain_token("ada", ttl)})
        async with await PollClient.open(f"{served.url}/ws", body=first) as client:
            refresh = await client.recv(timeout=ttl + UNIT)
            assert refresh["type"] == "refresh"
            reply = await client.request({"type": "auth", "token": plain_token("ada", 10 * ttl)})
            assert reply["type"] == "ack" and reply["data"]["expires_in"] > ttl
            assert (await client.call("whoami"))["data"]["sub"] == "ada"
            await client.send({"type": "auth", "token": plain_token("eve", 10 * ttl)})
            assert (await client.wait_closed())[0] == 4003


async def test_rate_limits_count_fallback_messages() -> None:
    """Per-peer rate limits apply to the messages of POSTs as to WebSocket messages."""
    hub = Hub(rate_limits=RateLimits(messages=Rate(2, per=60)))

    @hub.on("echo")
    def echo(peer: Peer, data: object) -> object:
        return data

    async with serve(hub) as served, await PollClient.open(f"{served.url}/ws") as client:
        assert (await client.call("echo", 1))["data"] == 1
        assert (await client.call("echo", 2))["data"] == 2
        refused = await client.call("echo", 3)
        assert refused["code"] == "rate_limited" and refused["details"]["retry_after"] > 0
