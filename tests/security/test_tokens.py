"""Token authentication on the event endpoint: handshake token, first ``auth``, refresh, expiry."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.conftest import UNIT, connect, serve
from tests.hub.wire import WireClient, expect_nothing
from tests.security.conftest import (
    PlainTokens,
    closed_with,
    handshake_status,
    open_with_auth,
    plain_token,
)
from tests.security.keys import SECRET, token
from wirehub import Hub, Peer, Timeouts
from wirehub.security.auth import TokenAuth
from wirehub.security.jwt import JWTAuth

LEAD = UNIT / 4
"""How long before expiry the test server asks for a refresh."""


def token_hub(auth: Any = None, **kwargs: Any) -> Hub:
    hub = Hub(**kwargs)
    hub.authenticate(auth or PlainTokens(refresh_before=LEAD))
    connected: list[Any] = []
    hub.state = connected  # type: ignore[attr-defined]

    @hub.on("connect")
    def on_connect(peer: Peer) -> None:
        connected.append(peer.user)

    @hub.on("whoami")
    def whoami(peer: Peer) -> Any:
        return peer.user

    return hub


async def test_token_in_header_query_or_first_message() -> None:
    """The same identity whichever way the token travels; the connect handler sees it."""
    hub = token_hub()
    async with serve(hub) as served:
        url = served.ws("/ws")
        header = {"Authorization": "Bearer ada"}
        async with await WireClient.open(url, additional_headers=header) as client:
            assert (await client.call("whoami"))["data"] == {"sub": "ada"}
        async with await WireClient.open(url + "?token=bob") as client:
            assert (await client.call("whoami"))["data"] == {"sub": "bob"}
        async with await open_with_auth(url, "cy") as client:
            assert (await client.call("whoami"))["data"] == {"sub": "cy"}
    assert hub.state == [{"sub": "ada"}, {"sub": "bob"}, {"sub": "cy"}]  # type: ignore[attr-defined]


async def test_bad_handshake_tokens_are_401() -> None:
    """A bad or expired token in the handshake is refused before the upgrade."""
    async with serve(token_hub()) as served:
        assert (await handshake_status(served.port, "/ws?token=bad"))[0] == 401
        expired = plain_token("ada", -1)
        assert (await handshake_status(served.port, f"/ws?token={expired}"))[0] == 401
        assert (await handshake_status(served.port, "/ws", "Authorization: Bearer bad\r\n"))[
            0
        ] == 401


async def test_plain_endpoints_need_the_token_in_the_handshake() -> None:
    """A plain endpoint has no first-message auth: no token there is a 401."""
    hub = token_hub()

    @hub.websocket("/plain")
    async def plain(ws: Any) -> None:
        await ws.send(json.dumps(ws.user))

    async with serve(hub) as served:
        assert (await handshake_status(served.port, "/plain"))[0] == 401
        async with connect(served.ws("/plain?token=ada")) as ws:
            assert json.loads(await ws.recv()) == {"sub": "ada"}


async def test_first_message_must_be_a_valid_auth() -> None:
    """Anything but a valid ``auth`` first closes with 4001 (4004 when expired); no welcome."""
    hub = token_hub()
    cases = [
        ({"type": "ping", "id": 1}, 4001),
        ({"type": "auth", "token": "bad"}, 4001),
        ({"type": "auth", "token": 42}, 4001),
        ({"type": "auth", "token": plain_token("ada", -1)}, 4004),
    ]
    async with serve(hub) as served:
        for message, code in cases:
            async with connect(served.ws("/ws")) as ws:
                await ws.send(json.dumps(message))
                assert (await closed_with(ws))[0] == code, message
        async with connect(served.ws("/ws")) as ws:
            await ws.send(b"\x00\x00\x00\x05{}")  # binary garbage
            assert (await closed_with(ws))[0] == 4001
    assert hub.state == []  # type: ignore[attr-defined]
    assert not hub.peers


async def test_no_auth_in_time_closes_4001() -> None:
    """A client that opens the WebSocket and stays silent is closed after ``Timeouts.auth``."""
    hub = token_hub(timeouts=Timeouts(auth=UNIT / 10))
    async with serve(hub) as served, connect(served.ws("/ws")) as ws:
        assert await closed_with(ws) == (4001, "no credentials in time")
    assert hub.stats["auth_timeouts"] == 1


async def test_messages_after_auth_are_processed_in_order() -> None:
    """Messages sent right behind the ``auth`` wait for the welcome, then run in order."""
    async with serve(token_hub()) as served, connect(served.ws("/ws")) as ws:
        await ws.send(json.dumps({"type": "auth", "token": "ada"}))
        for i in range(1, 4):
            await ws.send(json.dumps({"type": "ping", "id": i}))
        replies = [json.loads(await asyncio.wait_for(ws.recv(), UNIT)) for _ in range(4)]
        assert replies[0]["type"] == "welcome"
        assert [r["id"] for r in replies[1:]] == [1, 2, 3]


async def test_refresh_is_requested_and_a_new_token_keeps_the_connection() -> None:
    """Before ``exp`` the server sends ``refresh``; an ``auth`` with a new token is acked, and
    the connection outlives the first token."""
    ttl = 3 * LEAD
    async with serve(token_hub()) as served:
        client = await open_with_auth(served.ws("/ws"), plain_token("ada", ttl))
        refresh = await client.recv(timeout=ttl + UNIT)
        assert refresh["type"] == "refresh"
        assert 0 < refresh["expires_in"] <= LEAD + 0.01
        reply = await client.request({"type": "auth", "token": plain_token("ada", 10 * ttl)})
        assert reply["type"] == "ack" and reply["data"]["expires_in"] > ttl
        await asyncio.sleep(LEAD + 0.05)  # past the first token's expiry
        assert (await client.call("whoami"))["data"]["sub"] == "ada"
        await expect_nothing(client)
        await client.close()


async def test_no_refresh_closes_4004_at_expiry() -> None:
    """Ignoring ``refresh`` gets the connection closed with 4004 when the token expires."""
    ttl = 2 * LEAD
    hub = token_hub()
    async with serve(hub) as served:
        client = await open_with_auth(served.ws("/ws"), plain_token("ada", ttl))
        assert (await client.recv(timeout=ttl + UNIT))["type"] == "refresh"
        assert await closed_with(client.ws, ttl + UNIT) == (4004, "token expired")
    assert hub.stats["tokens_expired"] == 1


async def test_refresh_for_another_subject_closes_4003() -> None:
    """A refreshed token must be for the same subject: switching users mid-connection is 4003."""
    async with serve(token_hub()) as served:
        client = await open_with_auth(served.ws("/ws"), plain_token("ada", 60))
        await client.send({"type": "auth", "token": plain_token("mallory", 60), "id": 5})
        assert (await closed_with(client.ws))[0] == 4003


async def test_invalid_refresh_closes_4001() -> None:
    """A refresh with a token that does not verify closes with 4001."""
    async with serve(token_hub()) as served:
        client = await open_with_auth(served.ws("/ws"), plain_token("ada", 60))
        await client.send({"type": "auth", "token": "bad", "id": 5})
        assert (await closed_with(client.ws))[0] == 4001


async def test_auth_without_token_authentication_is_a_bad_message() -> None:
    """A hub without a TokenAuth answers ``auth`` with an error, and stays open."""
    async with serve(Hub()) as served, await WireClient.open(served.ws("/ws")) as client:
        reply = await client.request({"type": "auth", "token": "x"})
        assert reply["type"] == "error" and reply["code"] == "bad_message"
        await expect_nothing(client)


async def test_jwt_end_to_end_with_real_expiry() -> None:
    """JWTAuth on a real server: a 2-second token gets a refresh request, then 4004."""
    hub = token_hub(JWTAuth(SECRET, refresh_before=1.0))
    async with serve(hub) as served:
        url = served.ws("/ws")
        header = {"Authorization": f"Bearer {token({'name': 'Ada'}, ttl=2)}"}
        async with await WireClient.open(url, additional_headers=header) as client:
            assert (await client.call("whoami"))["data"]["name"] == "Ada"
        client = await open_with_auth(url, token(ttl=2.0))
        assert (await client.recv(timeout=2 + UNIT))["type"] == "refresh"
        assert (await closed_with(client.ws, 2 + UNIT))[0] == 4004
        bad = token(key="another-secret-that-is-long-enough-for-hs256")
        assert (await handshake_status(served.port, f"/ws?token={bad}"))[0] == 401


async def test_refresh_of_a_token_without_a_subject_closes_4003() -> None:
    """JWTs with no ``sub``: a refresh cannot show it is the same user, so it is refused (4003)."""
    auth = JWTAuth(SECRET, refresh_before=1.0)
    async with serve(token_hub(auth)) as served:
        client = await open_with_auth(served.ws("/ws"), auth.issue({"name": "ada"}))
        await client.send({"type": "auth", "token": auth.issue({"name": "eve"}), "id": 5})
        assert (await closed_with(client.ws))[0] == 4003


async def test_default_same_subject_refuses_what_it_cannot_compare() -> None:
    """The base ``TokenAuth.same_subject``: same ``sub`` or equal plain identities only."""

    class Ids(PlainTokens):
        same_subject = TokenAuth.same_subject

    auth = Ids()
    assert auth.same_subject({"sub": "ada", "exp": 1}, {"sub": "ada", "exp": 2})
    assert not auth.same_subject({"name": "ada"}, {"name": "ada"})
    assert not auth.same_subject({"sub": "ada"}, "ada")
    assert auth.same_subject("user-1", "user-1") and not auth.same_subject(None, None)
