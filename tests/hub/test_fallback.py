"""The HTTP fallback end to end on loopback: sessions, records, acks, limits and closes."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import TICK, UNIT, Served, serve
from tests.hub.fallback_wire import BINARY, CLOSE, TEXT, PollClient, record, records, text
from tests.hub.wire import WireClient
from tests.server.test_bounds import until
from wirehub import Hub, Limits, Timeouts
from wirehub.hub.peer import DisconnectReason, Peer
from wirehub.security.ratelimit import Rate, RateLimits
from wirehub.server.serve import Server

STYLES = pytest.mark.parametrize("stream", [False, True], ids=["long-polling", "streaming"])


def app(**kwargs: Any) -> tuple[Hub, list[DisconnectReason]]:
    """A hub with an echo, a room chat and a record of every disconnection."""
    hub = Hub(**kwargs)
    gone: list[DisconnectReason] = []

    @hub.on("echo")
    async def echo(peer: Peer, data: Any) -> Any:
        return data

    @hub.on("say")
    async def say(peer: Peer, data: Any) -> bool:
        await hub.to("lobby").emit("said", data, exclude=peer)
        return True

    @hub.on("count")
    def count(peer: Peer) -> int:
        peer.state["count"] = peer.state.get("count", 0) + 1
        return int(peer.state["count"])

    @hub.on("kind")
    def kind(peer: Peer) -> str:
        return str(peer.transport.kind)

    @hub.on("disconnect")
    def disconnect(peer: Peer, reason: DisconnectReason) -> None:
        gone.append(reason)

    return hub, gone


@pytest.fixture
async def served() -> AsyncIterator[tuple[Served, list[DisconnectReason]]]:
    hub, gone = app()
    async with serve(hub) as s:
        yield s, gone


def base(s: Served) -> str:
    return f"{s.url}/ws"


@STYLES
async def test_welcome_then_calls(served: Any, stream: bool) -> None:
    """A session is welcomed like a WebSocket and its calls are acknowledged; the peer's
    transport says which style the client uses."""
    s, _ = served
    async with await PollClient.open(base(s), stream=stream) as client:
        assert client.welcome["v"] == 1
        assert (await client.call("echo", {"a": [1, 2]}))["data"] == {"a": [1, 2]}
        style = "streaming" if stream else "long-polling"
        assert (await client.call("kind"))["data"] == style


async def test_messages_in_the_open_request(served: Any) -> None:
    """Messages in the body of the opening POST are processed after the welcome, in order."""
    s, _ = served
    body = b"".join(text({"type": "emit", "event": "count", "id": i}) for i in (1, 2))
    async with await PollClient.open(base(s), body=body) as client:
        assert await client.recv() == {"type": "ack", "id": 1, "data": 1}
        assert await client.recv() == {"type": "ack", "id": 2, "data": 2}
        assert (await client.call("count"))["data"] == 3  # numbered after the opening two


@STYLES
async def test_chat_with_a_websocket_peer(served: Any, stream: bool) -> None:
    """A fallback client and a WebSocket client share a room: events with positions, and
    binary data both ways."""
    s, _ = served
    async with (
        await PollClient.open(base(s), stream=stream) as poller,
        await WireClient.open(s.ws("/ws")) as ws,
    ):
        await poller.join("lobby")
        await ws.join("lobby")
        await ws.call("say", "from the websocket")
        event = await poller.recv()
        assert (event["event"], event["data"], event["offset"]) == ("said", "from the websocket", 1)
        await poller.call("say", "from the fallback")
        event = await ws.recv()
        assert (event["data"], event["offset"]) == ("from the fallback", 2)
        await poller.send_binary({"type": "emit", "event": "echo", "id": 77}, b"\x00\xff")
        reply = await poller.recv()
        assert (reply["type"], reply["id"], reply["_payload"]) == ("ack", 77, b"\x00\xff")


async def test_presence_reaches_a_fallback_session() -> None:
    """With presence on, a fallback member is told when a WebSocket member joins and leaves,
    and is listed in join acks like any peer."""
    hub, _ = app(presence=True)
    async with serve(hub) as s, await PollClient.open(base(s)) as poller:
        await poller.join("lobby")
        async with await WireClient.open(s.ws("/ws")) as ws:
            members = (await ws.join("lobby"))["data"]["members"]
            assert {m["id"] for m in members} == {poller.id, ws.id}
            joined = await poller.recv()
            assert (joined["type"], joined["joined"]["id"]) == ("presence", ws.id)
        left = await poller.recv()
        assert (left["type"], left["left"]["id"]) == ("presence", ws.id)


async def test_a_lost_response_is_sent_again(served: Any) -> None:
    """Records stay until acknowledged: asking again with the same ack gets the same records,
    and a later ack gets only what follows."""
    s, _ = served
    async with await PollClient.open(base(s), welcome=False) as client:
        client._receiving.cancel()  # type: ignore[union-attr]  # poll by hand
        await client.send({"type": "ping", "id": 1})
        first = records(await (await client.poll(0)).read())
        again = records(await (await client.poll(0)).read())
        assert first == again and len(first) == 2  # welcome, ack
        await client.send({"type": "ping", "id": 2})
        rest = records(await (await client.poll(2)).read())
        assert rest == [(TEXT, b'{"type":"ack","id":2,"data":null}')]


async def test_a_retried_post_runs_once(served: Any) -> None:
    """A POST sent again with the same seq (its answer was lost) is not processed twice."""
    s, _ = served
    async with await PollClient.open(base(s)) as client:
        body = text({"type": "emit", "event": "count", "id": 1})
        assert await client.post(body, seq=0) == 204
        assert await client.post(body, seq=0) == 204
        assert await client.recv() == {"type": "ack", "id": 1, "data": 1}
        assert (await client.call("count"))["data"] == 2
        assert await client.post(body, seq=client.seq + 1) == 409  # one went missing
        assert (await client.wait_closed())[0] == 1002


async def test_refused_requests(served: Any) -> None:
    """Wrong key 403, unknown session 410, missing parameters 400, a foreign page 403,
    HEAD 405; the session is unharmed."""
    s, _ = served
    async with await PollClient.open(base(s)) as client:
        url = f"{base(s)}/poll"
        get = client.http.get
        wrong = {"Wirehub-Key": "x" * 32}
        assert (await get(url, params=client.params(ack=1), headers=wrong)).status == 403
        gone = client.params(ack=0) | {"session": client.session + "x"}
        assert (await get(url, params=gone, headers=client.headers)).status == 410
        assert (await get(url, params=client.params(), headers=client.headers)).status == 400
        foreign = client.headers | {"Origin": "https://evil.example"}
        assert (await get(url, params=client.params(ack=1), headers=foreign)).status == 403
        head = await client.http.head(url, params=client.params(ack=1), headers=client.headers)
        assert head.status == 405
        opened = await client.http.post(f"{base(s)}/open", headers={"Origin": "https://evil.x"})
        assert opened.status == 403
        assert (await client.call("echo", 1))["data"] == 1


async def test_sessions_count_like_handshakes() -> None:
    """Opening sessions is limited per client address like WebSocket handshakes (429), and
    an open session holds one of the address's connections until it closes."""
    limits = RateLimits(handshakes_per_ip=Rate(3, per=60), connections_per_ip=1)
    hub, _ = app(rate_limits=limits)
    async with serve(hub) as s, aiohttp.ClientSession() as http:
        first = await PollClient.open(base(s))
        refused = await http.post(f"{base(s)}/open")
        assert refused.status == 429  # one connection per address, and it is taken
        await first.close()
        await wait_for(lambda: hub.gate.open == 0)
        second = await PollClient.open(base(s))
        await second.close()
        await wait_for(lambda: hub.gate.open == 0)
        third = await http.post(f"{base(s)}/open")
        assert third.status == 429 and "retry-after" in third.headers  # 3 per minute


async def test_an_idle_session_expires() -> None:
    """A session nobody polls is closed after Timeouts.session: its peer leaves with 1006,
    and a later request is told 410."""
    hub, gone = app(timeouts=Timeouts(session=TICK, poll=TICK))
    async with serve(hub) as s, await PollClient.open(base(s)) as client:
        client._receiving.cancel()  # type: ignore[union-attr]  # the client vanishes
        await wait_for(lambda: bool(gone))
        assert gone[0].code == 1006
        await wait_for(lambda: not hub.fallback or not hub.fallback.sessions)
        assert (await client.poll(client.ack)).status == 410


@STYLES
async def test_a_cut_receive_request_lets_the_session_expire(stream: bool) -> None:
    """A stream or long-poll whose client went away no longer holds its session open:
    without a new request the session expires after Timeouts.session, not after a poll."""
    hub, gone = app(timeouts=Timeouts(session=TICK, poll=60 * UNIT))
    async with serve(hub) as s, await PollClient.open(base(s), welcome=False) as client:
        client._receiving.cancel()  # type: ignore[union-attr]  # poll by hand
        await (await client.poll(0)).read()  # the welcome
        polling = asyncio.ensure_future(client.poll(1, stream=stream))
        assert hub.fallback is not None
        session = hub.fallback.sessions[client.session]
        await until(lambda: session.receiving)
        if stream:
            (await polling).close()  # the connection is dropped
        else:
            polling.cancel()  # the same, before any answer
        await wait_for(lambda: bool(gone))
        assert gone[0].code == 1006


@STYLES
async def test_closes(served: Any, stream: bool) -> None:
    """The client's close record ends the peer with its code; the peer's close reaches the
    client as a close record."""
    s, gone = served
    client = await PollClient.open(base(s), stream=stream)
    await client.close(4321)
    await wait_for(lambda: bool(gone))
    assert gone[0].code == 4321
    async with await PollClient.open(base(s), stream=stream) as client:
        hub: Hub = s.server.hub
        [peer] = [p for p in hub.peers.values() if p.id == client.id]
        await peer.close(4003, "go away")
        assert await client.wait_closed() == (4003, "go away")


@STYLES
async def test_shutdown_closes_sessions(stream: bool) -> None:
    """Server shutdown answers the session's open poll with a close record (1012)."""
    hub, gone = app()
    async with serve(hub, shutdown_code=1012) as s:
        client = await PollClient.open(base(s), stream=stream)
        # The poll after the welcome must have reached the server: a shutdown before it
        # would find no request to answer (the client learns at its next poll: 410).
        assert hub.fallback is not None
        await until(lambda: hub.fallback.sessions[client.session].receiving)  # type: ignore[union-attr]
        await s.server.shutdown(timeout=UNIT)
        assert await client.wait_closed() == (1012, "server restarting")
        await client.close(None)
    assert [r.code for r in gone] == [1012]


async def test_a_session_not_polling_at_shutdown_learns_at_its_next_poll() -> None:
    """A session with no poll in flight when the server shuts down is told at its next
    poll: by the close record (1012) when the same hub serves again (embedded), by 410
    from a new process (its client then opens a new session and recovers)."""
    hub, gone = app()
    server = Server(hub, shutdown_code=1012)
    [(_, port)] = await server.listen("127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}/ws"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/open") as response:  # a session, never polled
            opened = await response.json()
        await server.shutdown(timeout=UNIT)
        assert [r.code for r in gone] == [1012]
        poll = {"session": opened["session"], "ack": "0"}
        bodies = []
        for serving, status in ((hub, 200), (app()[0], 410)):
            again = Server(serving)
            await again.listen("127.0.0.1", port)
            try:
                headers = {"Wirehub-Key": opened["key"]}
                async with http.get(f"{url}/poll", params=poll, headers=headers) as response:
                    assert response.status == status
                    bodies.append(await response.read())
            finally:
                await again.shutdown(timeout=UNIT)
    welcome, close = records(bodies[0])
    assert welcome[0] == TEXT and b'"welcome"' in welcome[1]
    assert (close[0], close[1][:2]) == (CLOSE, (1012).to_bytes(2, "big"))


async def test_records_wait_for_a_poll_and_a_stream_passes_them_on() -> None:
    """A long-poll waits for the first record and answers with it; a stream keeps passing
    records as they come and ends after Timeouts.poll."""
    hub, _ = app(timeouts=Timeouts(poll=UNIT))
    async with serve(hub) as s, await PollClient.open(base(s), welcome=False) as client:
        client._receiving.cancel()  # type: ignore[union-attr]  # poll by hand
        welcome = await (await client.poll(0)).read()
        waiting = asyncio.ensure_future(client.poll(1))
        await asyncio.sleep(TICK)
        assert not waiting.done()
        await hub.emit("news", 1)
        assert [json for _, json in records(await (await waiting).read())] == [
            b'{"type":"event","event":"news","data":1}'
        ]
        stream = await client.poll(2, stream=True)
        assert await stream.content.readexactly(2) == b"\x89\x00"  # a ping opens it
        for n in (2, 3):
            await hub.emit("news", n)
            [(opcode, payload)] = records(await stream.content.readexactly(42))
            assert opcode == TEXT
            assert payload == b'{"type":"event","event":"news","data":%d}' % n
        assert await stream.content.read() == b""  # ended after Timeouts.poll
        assert len(records(welcome)) == 1


async def test_a_client_that_never_polls_is_a_slow_consumer() -> None:
    """Unacknowledged records count as unsent bytes: past Limits.max_buffered the peer is
    closed with 4008, like a WebSocket client that does not read."""
    hub, gone = app(
        limits=Limits(max_buffered=64 * 1024, write_buffer_high=16 * 1024, write_buffer_low=4096)
    )
    async with serve(hub) as s, await PollClient.open(base(s)) as client:
        client._receiving.cancel()  # type: ignore[union-attr]
        for _ in range(100):
            await hub.emit("big", "x" * 1000)
        await wait_for(lambda: bool(gone))
        assert [r.code for r in gone] == [4008]


async def test_bodies_are_bounded(served: Any) -> None:
    """A message over max_message_size closes the session with 1009 (413); a malformed body
    with 1002 (400); a body over max_body_size is refused before it is read (413)."""
    hub, _ = app(limits=Limits(max_message_size=100, max_body_size=1000))
    async with serve(hub) as s:
        async with await PollClient.open(base(s)) as client:
            assert await client.post(record(TEXT, b"x" * 101)) == 413
            assert (await client.wait_closed())[0] == 1009
        async with await PollClient.open(base(s)) as client:
            assert await client.post(b"\x81\x85abcd") == 400  # masked, cut
            assert (await client.wait_closed())[0] == 1002
        async with await PollClient.open(base(s)) as client:
            assert await client.post(record(BINARY, b"x" * 2000)) == 413
            assert (await client.call("echo", 1))["data"] == 1  # not read: nothing happened


async def test_the_largest_message_fits_in_a_post(served: Any) -> None:
    """With the default limits, a POST carries a message of max_message_size (the body
    bound leaves room for the record around it)."""
    s, _ = served
    async with await PollClient.open(base(s)) as client:
        header = {"type": "emit", "event": "echo", "id": 1}
        size = Limits().max_message_size or 0
        payload = b"x" * (size - 4 - len(json.dumps(header)))  # the message is exactly size
        await client.send_binary(header, payload)
        reply = await client.recv()
        assert (reply["type"], len(reply["_payload"])) == ("ack", len(payload))


async def test_the_close_record_is_the_last(served: Any) -> None:
    """Records after a close record are a protocol error (400)."""
    s, _ = served
    async with await PollClient.open(base(s)) as client:
        body = record(CLOSE, struct.pack("!H", 1000)) + text({"type": "ping"})
        assert await client.post(body) == 400


async def wait_for(condition: Any) -> None:
    """Wait (within UNIT) until ``condition()`` holds: what a server does after answering."""
    async with asyncio.timeout(UNIT):
        while not condition():
            await asyncio.sleep(TICK / 10)
