"""``POST /api/emit``: emitting over HTTP with ``Hub(api_key=...)``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.apps.nodes import make_hub
from tests.brokers.test_emitter import run_script
from tests.conftest import RawResponse, http, serve
from tests.hub.wire import WireClient, expect_nothing
from wirehub import ConfigError, Hub, Limits
from wirehub.brokers.redis import RedisBroker

KEY = "s3cret-key"


def post(body: bytes, key: str | None = KEY, path: str = "/api/emit") -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key is not None else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def emit(port: int, payload: Any, **kwargs: Any) -> RawResponse:
    return await http(port, post(json.dumps(payload).encode(), **kwargs))


async def test_emit_to_a_room_a_peer_and_everyone() -> None:
    """A room emit answers its position; peer and global emits reach their targets."""
    async with (
        serve(make_hub("n", api_key=KEY)) as s,
        await WireClient.open(s.ws("/ws")) as first,
        await WireClient.open(s.ws("/ws")) as second,
    ):
        response = await emit(s.port, {"event": "news", "data": {"n": 1}, "room": "lobby"})
        assert response.status == 200
        answer = json.loads(response.body)
        assert answer["ok"] is True and answer["offset"] == 1
        for client in (first, second):
            message = await client.recv()
            assert (message["event"], message["data"], message["room"]) == (
                "news",
                {"n": 1},
                "lobby",
            )
            assert (message["epoch"], message["offset"]) == (answer["epoch"], 1)
        response = await emit(s.port, {"event": "dm", "data": "psst", "peer": second.id})
        assert json.loads(response.body) == {"ok": True}
        assert (await second.recv())["data"] == "psst"
        await expect_nothing(first)
        await emit(s.port, {"event": "all"})
        for client in (first, second):
            message = await client.recv()
            assert (message["event"], message.get("data")) == ("all", None)


@pytest.mark.parametrize(
    ("key", "why"),
    [(None, "missing"), ("wrong", "wrong key"), (KEY + "x", "longer key"), ("", "empty key")],
)
async def test_unauthorized_without_the_key(key: str | None, why: str) -> None:
    """Without exactly the configured bearer key the answer is 401 and nothing is emitted."""
    async with serve(make_hub("n", api_key=KEY)) as s, await WireClient.open(s.ws("/ws")) as c:
        response = await emit(s.port, {"event": "x", "room": "lobby"}, key=key)
        assert response.status == 401, why
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert json.loads(response.body)["error"] == "unauthorized"
        await expect_nothing(c)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"event": 5}',
        b'{"event": ""}',
        b'{"event": "x", "room": "a", "peer": "b"}',
        b'{"event": "x", "room": ""}',
        b'{"event": "x", "room": "bad\\u0000name"}',
        b'{"event": "x", "unknown": 1}',
        b'{"event": "error", "room": "lobby"}',
    ],
)
async def test_bad_requests_get_400(body: bytes) -> None:
    """A body that is not a valid emit request is answered 400 with a reason."""
    async with serve(make_hub("n", api_key=KEY)) as s:
        response = await http(s.port, post(body))
        assert response.status == 400, response
        answer = json.loads(response.body)
        assert answer["error"] == "bad_request" and answer["message"]


async def test_too_large_gets_413() -> None:
    """A body larger than the largest message clients accept is answered 413."""
    hub = make_hub("n", api_key=KEY, limits=Limits(max_message_size=100))
    async with serve(hub) as s:
        response = await emit(s.port, {"event": "x", "data": "y" * 200})
        assert response.status == 413
        assert json.loads(response.body)["error"] == "too_large"


async def test_only_post_and_only_with_a_key() -> None:
    """GET is not allowed; a hub without ``api_key`` has no such route."""
    async with serve(make_hub("n", api_key=KEY)) as s:
        response = await http(s.port, b"GET /api/emit HTTP/1.1\r\n\r\n")
        assert (response.status, response.headers["allow"]) == (405, "POST")
    async with serve(make_hub("n")) as s:
        assert (await emit(s.port, {"event": "x"})).status == 404


def test_empty_api_key_is_refused() -> None:
    """``Hub(api_key="")`` raises ConfigError rather than accepting ``Bearer ``."""
    with pytest.raises(ConfigError):
        Hub(api_key="")


async def test_post_from_another_process_reaches_a_client_on_another_node(
    redis_url: str, prefix: str
) -> None:
    """A separate process POSTs to node A; a client of node B (same Redis) gets the event."""
    async with (
        serve(make_hub("a", api_key=KEY, broker=RedisBroker(redis_url, prefix=prefix))) as a,
        serve(make_hub("b", broker=RedisBroker(redis_url, prefix=prefix))) as b,
        await WireClient.open(b.ws("/ws")) as on_b,
    ):
        output = await run_script(
            f"""
            import json, urllib.request

            request = urllib.request.Request(
                "{a.url}/api/emit",
                data=json.dumps({{"event": "alert", "data": [1, 2], "room": "lobby"}}).encode(),
                headers={{"Authorization": "Bearer {KEY}", "Content-Type": "application/json"}},
            )
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
            with opener.open(request) as response:
                print(response.status, response.read().decode())
            """
        )
        status, _, body = output.strip().partition(" ")
        assert status == "200"
        answer = json.loads(body)
        message = await on_b.recv()
        assert (message["event"], message["data"]) == ("alert", [1, 2])
        assert (message["epoch"], message["offset"]) == (answer["epoch"], answer["offset"])
