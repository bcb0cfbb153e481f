"""Per-room join and per-event emit permissions: hooks and claims. Denied means nothing happens."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import serve
from tests.hub.wire import WireClient, expect_nothing
from tests.security.keys import SECRET, token
from wirehub import Hub, Peer
from wirehub.security import (
    claim_values,
    events_claim,
    has_role,
    matches,
    require_role,
    rooms_claim,
)
from wirehub.security.jwt import JWTAuth


def test_claim_helpers() -> None:
    """Claims are lists or space-separated strings, read from dicts or objects."""
    assert claim_values({"rooms": ["a", "b", 3]}, "rooms") == ("a", "b")
    assert claim_values({"scope": "read write"}, "scope") == ("read", "write")
    assert claim_values({}, "rooms") == ()
    assert claim_values(None, "rooms") == ()
    assert claim_values(type("U", (), {"roles": ["admin"]})(), "roles") == ("admin",)
    assert matches("chat:general", ["news", "chat:*"])
    assert not matches("chatroom", ["chat:*"])
    assert not matches("Chat:x", ["chat:*"])  # case-sensitive
    assert has_role({"roles": ["mod", "user"]}, "admin", "mod")
    assert not has_role({"roles": "user"}, "admin")


def claims_hub() -> Hub:
    hub = Hub()
    hub.authenticate(JWTAuth(SECRET))
    hub.authorize_join(rooms_claim())
    hub.authorize_emit(events_claim(free={"ping"}))

    @hub.on("say")
    async def say(peer: Peer, data: dict[str, Any]) -> dict[str, bool]:
        await hub.to(data["room"]).emit("said", data["text"])
        return {"ok": True}

    @hub.on("ping")
    def ping(peer: Peer) -> str:
        return "pong"

    return hub


async def open_as(url: str, claims: dict[str, Any]) -> WireClient:
    return await WireClient.open(
        url, additional_headers={"Authorization": f"Bearer {token(claims)}"}
    )


async def test_rooms_claim_patterns_decide_joins() -> None:
    """``rooms: ["chat:*", "news"]``: those rooms join; any other is ``forbidden``, with no
    room name in the error; and the denied peer receives nothing of that room."""
    hub = claims_hub()
    async with serve(hub) as served:
        url = served.ws("/ws")
        ada = await open_as(url, {"rooms": ["chat:*", "news"], "events": ["say"]})
        eve = await open_as(url, {"sub": "eve", "rooms": ["chat:public"], "events": ["say"]})
        for room in ("chat:general", "chat:x", "news"):
            assert (await ada.request({"type": "join", "room": room}))["type"] == "ack"
        denied = await eve.request({"type": "join", "room": "chat:secret-plans", "history": 10})
        assert denied["type"] == "error" and denied["code"] == "forbidden"
        assert "secret" not in str(denied) and "chat:" not in str(denied)
        assert "details" not in denied
        await ada.call("say", {"room": "chat:secret-plans", "text": "the plan"})
        await expect_nothing(eve)
        assert hub.stats["forbidden"] == 1
        await ada.close()
        await eve.close()


async def test_events_claim_decides_emits() -> None:
    """An event outside the ``events`` claim is ``forbidden``; its handler never runs."""
    hub = claims_hub()
    async with serve(hub) as served:
        url = served.ws("/ws")
        reader = await open_as(url, {"sub": "r", "rooms": ["lobby"], "events": []})
        writer = await open_as(url, {"sub": "w", "rooms": ["lobby"], "events": ["say"]})
        await reader.join("lobby")
        denied = await reader.call("say", {"room": "lobby", "text": "spam"})
        assert denied["type"] == "error" and denied["code"] == "forbidden"
        assert denied["message"] == "not allowed to emit this event"
        assert (await reader.call("ping"))["data"] == "pong"  # free
        assert (await writer.call("say", {"room": "lobby", "text": "hi"}))["data"] == {"ok": True}
        said = await reader.recv()
        assert said["event"] == "said" and said["data"] == "hi"
        await expect_nothing(reader)
        await reader.close()
        await writer.close()


async def test_roles() -> None:
    """``require_role`` works as a join and as an emit authorizer."""
    hub = Hub()
    hub.authenticate(JWTAuth(SECRET))
    hub.authorize_join(require_role("admin"))
    hub.authorize_emit(require_role("admin", "mod"))

    @hub.on("kick")
    def kick(peer: Peer, data: Any) -> str:
        return "kicked"

    async with serve(hub) as served:
        url = served.ws("/ws")
        mod = await open_as(url, {"roles": ["mod"]})
        assert (await mod.call("kick", "eve"))["data"] == "kicked"
        assert (await mod.request({"type": "join", "room": "admins"}))["code"] == "forbidden"
        admin = await open_as(url, {"sub": "root", "roles": "admin"})
        assert (await admin.request({"type": "join", "room": "admins"}))["type"] == "ack"
        await mod.close()
        await admin.close()


@pytest.mark.parametrize("kind", ["sync", "async", "raises"])
async def test_authorize_emit_hook(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """The hook sees (peer, event, validated data); False or an exception means forbidden."""
    hub = Hub()
    seen: list[tuple[str, Any]] = []
    ran: list[Any] = []

    def decide(peer: Peer, event: str, data: Any) -> bool:
        seen.append((event, data))
        if kind == "raises":
            raise RuntimeError("policy store down")
        return bool(data.get("allowed"))

    async def decide_async(peer: Peer, event: str, data: Any) -> bool:
        await asyncio.sleep(0)
        return decide(peer, event, data)

    hub.authorize_emit(decide_async if kind == "async" else decide)

    @hub.on("act")
    async def act(peer: Peer, data: dict[str, Any]) -> str:
        ran.append(data)
        return "done"

    async with serve(hub) as served, await WireClient.open(served.ws("/ws")) as client:
        ok = await client.call("act", {"allowed": True})
        no = await client.call("act", {"allowed": False})
        bad = await client.call("act", [1, 2])  # fails validation before the hook
    if kind == "raises":
        assert ok["code"] == no["code"] == "forbidden" and ran == []
        assert "policy store down" in caplog.text
    else:
        assert ok["data"] == "done" and no["code"] == "forbidden"
        assert ran == [{"allowed": True}]
    assert bad["code"] == "invalid_data"
    assert seen[:2] == [("act", {"allowed": True}), ("act", {"allowed": False})]
    assert len(seen) == 2


async def test_server_side_joins_and_emits_are_not_checked() -> None:
    """Hooks guard clients' requests only: ``peer.join`` from the server always works."""
    hub = Hub()
    hub.authorize_join(lambda peer, room: False)

    @hub.on("connect")
    async def on_connect(peer: Peer) -> None:
        await peer.join("staff")

    async with serve(hub) as served, await WireClient.open(served.ws("/ws")) as client:
        await hub.to("staff").emit("memo", "hello")
        assert (await client.recv())["data"] == "hello"
