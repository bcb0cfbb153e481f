"""The Python client with tokens: fresh ones per attempt, transparent refresh, no retry loops."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.client.conftest import FAST
from tests.conftest import UNIT, serve
from tests.security.conftest import PlainTokens, plain_token
from wirehub import Client, Hub, Peer
from wirehub.codes import CloseCode
from wirehub.exceptions import HandshakeError

LEAD = UNIT / 4


def token_hub() -> Hub:
    hub = Hub()
    hub.authenticate(PlainTokens(refresh_before=LEAD))
    peers: list[Peer] = []
    hub.state = peers  # type: ignore[attr-defined]

    @hub.on("connect")
    def on_connect(peer: Peer) -> None:
        peers.append(peer)

    @hub.on("whoami")
    def whoami(peer: Peer) -> Any:
        return peer.user

    return hub


class Tokens:
    """A ``get_token`` that counts its calls and can start handing out bad tokens."""

    def __init__(self, ttl: float | None) -> None:
        self.ttl = ttl
        self.calls = 0
        self.subject = "ada"

    def __call__(self) -> str:
        self.calls += 1
        return plain_token(self.subject, self.ttl)


async def test_refresh_is_transparent() -> None:
    """Tokens shorter than the test are refreshed in place: same peer, no reconnection."""
    tokens = Tokens(ttl=3 * LEAD)
    async with serve(token_hub()) as served:
        client = await Client(served.ws("/ws"), get_token=tokens, reconnect=FAST)
        peer = client.id
        for _ in range(3):
            await asyncio.sleep(3 * LEAD)  # past the expiry of the previous token
            assert (await client.call("whoami"))["sub"] == "ada"
        assert client.id == peer
        assert tokens.calls >= 3
        await client.close()


async def test_async_get_token_is_awaited_per_attempt() -> None:
    """An async ``get_token`` is awaited before each connection attempt."""
    calls: list[int] = []

    async def get_token() -> str:
        await asyncio.sleep(0)
        calls.append(1)
        return "ada"

    hub = token_hub()
    async with serve(hub) as served:
        client = await Client(served.ws("/ws"), get_token=get_token, reconnect=FAST)
        await hub.state[0].close(CloseCode.TOKEN_EXPIRED, "token expired")  # type: ignore[attr-defined]
        for _ in range(int(40 * UNIT)):
            if len(calls) >= 2 and client.connected:
                break
            await asyncio.sleep(0.025)
        assert len(calls) == 2 and client.connected
        await client.close()


async def test_no_reconnection_loop_after_a_401() -> None:
    """Closed with 4004, the client reconnects with a new token; refused with 401, it stops."""
    tokens = Tokens(ttl=None)
    hub = token_hub()
    async with serve(hub) as served:
        client = await Client(served.ws("/ws"), get_token=tokens, reconnect=FAST)
        tokens.subject = "bad"
        await hub.state[0].close(CloseCode.TOKEN_EXPIRED, "token expired")  # type: ignore[attr-defined]
        why = await asyncio.wait_for(client.wait_closed(), 5 * UNIT)
        assert "401" in why.reason
        await asyncio.sleep(10 * FAST.max_delay)
        assert tokens.calls == 2 and hub.stats["refused_auth"] == 1


@pytest.mark.parametrize("code", [CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN])
async def test_no_reconnection_after_4001_or_4003(code: int) -> None:
    """A welcomed client closed with 4001 or 4003 does not come back."""
    hub = token_hub()
    async with serve(hub) as served:
        client = await Client(served.ws("/ws"), token="ada", reconnect=FAST)
        await hub.state[0].close(code, "go away")  # type: ignore[attr-defined]
        why = await asyncio.wait_for(client.wait_closed(), UNIT)
        assert why.code == code
        await asyncio.sleep(10 * FAST.max_delay)
        assert len(hub.state) == 1  # type: ignore[attr-defined]


async def test_a_refused_first_connection_is_not_retried() -> None:
    """401 and 403 at the first handshake raise at once: no retries at all."""
    hub = token_hub()
    async with serve(hub) as served:
        with pytest.raises(HandshakeError) as info:
            await Client(served.ws("/ws"), token="bad", reconnect=FAST)
        assert info.value.status == 401
        assert hub.stats["refused_auth"] == 1


async def test_a_static_token_that_expired_stops_after_one_attempt() -> None:
    """Without get_token, an expired connection reconnects once with the old token: 401, stop."""
    hub = token_hub()
    async with serve(hub) as served:
        client = await Client(served.ws("/ws"), token=plain_token("ada", 2 * LEAD), reconnect=FAST)
        why = await asyncio.wait_for(client.wait_closed(), 2 * LEAD + 5 * UNIT)
        assert "401" in why.reason
        assert hub.stats["tokens_expired"] == 1 and hub.stats["refused_auth"] == 1


async def test_get_token_failures() -> None:
    """A get_token that raises fails the first connect with HandshakeError (chained)."""

    def broken() -> str:
        raise RuntimeError("login server down")

    async with serve(token_hub()) as served:
        with pytest.raises(HandshakeError, match="could not get a token") as info:
            await Client(served.ws("/ws"), get_token=broken)
        assert isinstance(info.value.__cause__, RuntimeError)
