"""The event layer end to end: events, acks, errors, rooms and emits, over real sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, TypedDict

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import UNIT, connect, serve
from tests.hub.wire import WireClient, expect_nothing
from wirehub import ConfigError, EventError, Hub, Reject
from wirehub.hub.peer import DisconnectReason, Peer


class Chat(msgspec.Struct):
    text: str
    to: str | None = None


@dataclasses.dataclass
class Move:
    x: int
    y: int


class Note(TypedDict):
    title: str


def chat_hub(*, on_connect: bool = True, **kwargs: Any) -> Hub:
    hub = Hub(**kwargs)

    if on_connect:

        @hub.on("connect")
        async def connect_(peer: Peer, request: Any) -> None:
            if request.query.get("room"):
                await peer.join(request.query["room"])

    @hub.on("say")
    async def say(peer: Peer, msg: Chat) -> dict[str, Any]:
        await hub.to(msg.to or "lobby").emit(
            "said", {"text": msg.text, "by": peer.id}, exclude=peer
        )
        return {"ok": True}

    @hub.on("shout")
    async def shout(peer: Peer, data: Any) -> None:
        await hub.emit("shout", data)

    @hub.on("whisper")
    async def whisper(peer: Peer, data: dict[str, Any]) -> None:
        await hub.to_peer(data["peer"]).emit("whisper", data["text"])

    @hub.on("add")
    def add(peer: Peer, numbers: list[int]) -> int:
        return sum(numbers)

    @hub.on("move")
    def move(peer: Peer, m: Move) -> list[int]:
        return [m.x, m.y]

    @hub.on("note")
    def note(peer: Peer, n: Note) -> str:
        return n["title"]

    @hub.on("refuse")
    def refuse(peer: Peer, data: Any) -> None:
        raise EventError("no_way", "refused on purpose", {"why": data})

    @hub.on("crash")
    async def crash(peer: Peer) -> None:
        raise RuntimeError("handler bug")

    @hub.on("upload")
    def upload(peer: Peer, data: bytes) -> bytes:
        return data[::-1]

    @hub.on("echo_to_me")
    async def echo_to_me(peer: Peer, data: Any) -> None:
        await peer.emit("echo", data)

    return hub


async def test_welcome_describes_the_connection() -> None:
    """The first message is a welcome with the protocol version, peer id and limits."""
    async with serve(chat_hub()) as s, await WireClient.open(s.ws("/ws")) as c:
        assert c.welcome["v"] == 1
        assert len(c.id) >= 16
        assert c.welcome["limits"]["max_message_size"] == 1024 * 1024


async def test_ack_carries_the_handler_return_value() -> None:
    """A sync handler's return value comes back in the ack for that request id."""
    async with serve(chat_hub()) as s, await WireClient.open(s.ws("/ws")) as c:
        assert await c.call("add", [1, 2, 3]) == {"type": "ack", "id": 1, "data": 6}
        assert (await c.call("move", {"x": 1, "y": 2}))["data"] == [1, 2]
        assert (await c.call("note", {"title": "t"}))["data"] == "t"


async def test_event_error_becomes_an_error_reply() -> None:
    """A handler raising EventError answers with its code, message and details."""
    async with serve(chat_hub()) as s, await WireClient.open(s.ws("/ws")) as c:
        reply = await c.call("refuse", 7)
        assert reply == {
            "type": "error",
            "id": 1,
            "code": "no_way",
            "message": "refused on purpose",
            "details": {"why": 7},
        }


async def test_handler_crash_is_contained(caplog: pytest.LogCaptureFixture) -> None:
    """A crashing handler gives a generic internal_error, is logged, and the peer stays."""
    async with serve(chat_hub()) as s, await WireClient.open(s.ws("/ws")) as c:
        reply = await c.call("crash")
        assert reply["code"] == "internal_error"
        assert "handler bug" not in json.dumps(reply)  # no internals leak to the client
        assert "handler for event 'crash' failed" in caplog.text
        assert (await c.call("add", [2]))["data"] == 2


@pytest.mark.parametrize(
    ("event", "data", "path"),
    [
        ("say", {"text": 5}, "$.text"),
        ("say", {}, "$.text"),  # a missing field: its path
        ("move", {"x": 1, "y": "2"}, "$.y"),
        ("note", {"title": None}, "$.title"),
        ("add", [1, "x"], "$[1]"),
    ],
)
async def test_invalid_data_names_the_field(event: str, data: Any, path: str) -> None:
    """Data failing the handler's annotation is refused with the bad field's path."""
    async with serve(chat_hub()) as s, await WireClient.open(s.ws("/ws")) as c:
        reply = await c.call(event, data)
        assert reply["type"] == "error" and reply["code"] == "invalid_data"
        assert reply["details"]["path"] == path
        assert path in reply["message"]


async def test_bad_messages_get_errors_and_hurt_nobody() -> None:
    """Invalid JSON, wrong shapes and unknown events get errors; the peer and others go on."""
    async with (
        serve(chat_hub()) as s,
        await WireClient.open(s.ws("/ws?room=lobby")) as bad,
        await WireClient.open(s.ws("/ws?room=lobby")) as good,
    ):
        history = '{"type":"join","room":"lobby","history":-5}'  # was taken for 0
        for raw in [
            "{",
            "[]",
            "null",
            '{"type":"emit"}',
            '{"type":"nope"}',
            '{"type":"join"}',
            history,
        ]:
            await bad.ws.send(raw)
            reply = await bad.recv()
            assert reply["type"] == "error" and reply["code"] == "bad_message", (raw, reply)
        await bad.ws.send(b"\x00\x00\x00\xff{}")  # binary header longer than the message
        assert (await bad.recv())["code"] == "bad_message"
        reply = await bad.call("no-such-event", 1)
        assert reply["code"] == "unknown_event" and reply["id"] == 1
        await bad.send({"type": "emit", "event": "connect"})  # reserved names are not events
        assert (await bad.recv())["code"] == "unknown_event"
        assert (await bad.call("say", {"text": "still here"}))["data"] == {"ok": True}
        assert (await good.recv())["data"]["text"] == "still here"


async def test_room_emit_reaches_members_only_and_excludes_sender() -> None:
    """A room emit with exclude reaches the other members, not the sender or outsiders."""
    async with (
        serve(chat_hub()) as s,
        await WireClient.open(s.ws("/ws?room=lobby")) as a,
        await WireClient.open(s.ws("/ws?room=lobby")) as b,
        await WireClient.open(s.ws("/ws?room=other")) as outsider,
    ):
        assert (await a.call("say", {"text": "hi"}))["type"] == "ack"
        event = await b.recv()
        assert event["type"] == "event" and event["event"] == "said"
        assert event["room"] == "lobby" and event["data"] == {"text": "hi", "by": a.id}
        assert isinstance(event["epoch"], str) and event["offset"] == 1
        await expect_nothing(a)
        await expect_nothing(outsider)


async def test_emit_to_everyone_and_to_one_peer() -> None:
    """hub.emit reaches every peer including the sender; to_peer reaches just that peer."""
    async with (
        serve(chat_hub()) as s,
        await WireClient.open(s.ws("/ws")) as a,
        await WireClient.open(s.ws("/ws")) as b,
        await WireClient.open(s.ws("/ws")) as c,
    ):
        await a.send({"type": "emit", "event": "shout", "data": "all"})
        for client in (a, b, c):
            message = await client.recv()
            assert message == {"type": "event", "event": "shout", "data": "all"}
        assert (await a.call("whisper", {"peer": c.id, "text": "psst"}))["type"] == "ack"
        assert await c.recv() == {"type": "event", "event": "whisper", "data": "psst"}
        await expect_nothing(b)
        await a.send({"type": "emit", "event": "echo_to_me", "data": {"n": 1}})
        assert await a.recv() == {"type": "event", "event": "echo", "data": {"n": 1}}


async def test_events_named_like_the_clients_callbacks_are_refused() -> None:
    """Emitting "error" or "gap" raises ConfigError: both clients would drop such an event."""
    hub = Hub()

    @hub.on("shout")
    async def shout(peer: Peer, name: str) -> None:
        await hub.to("lobby").emit(name, "x")

    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:
        for name in ("error", "gap", "connect"):
            with pytest.raises(ConfigError, match=f"'{name}': the clients keep that name"):
                await hub.emit(name, "x")
            answer = await client.call("shout", name)
            assert (answer["type"], answer["code"]) == ("error", "internal_error")
        assert (await client.call("shout", "app_error"))["type"] == "ack"


async def test_join_and_leave_change_membership() -> None:
    """Client joins are acked with the room position; after leave, room events stop."""
    hub = chat_hub()
    async with (
        serve(hub) as s,
        await WireClient.open(s.ws("/ws")) as a,
        await WireClient.open(s.ws("/ws")) as b,
    ):
        ack = await b.join("games")
        assert ack["data"] == {"epoch": ack["data"]["epoch"], "offset": 0}
        assert {p.id for p in hub.room("games").members} == {b.id}
        assert hub.peers[b.id].rooms == {"games"}
        await a.call("say", {"text": "gg", "to": "games"})
        assert (await b.recv())["data"]["text"] == "gg"
        assert (await b.request({"type": "leave", "room": "games"}))["type"] == "ack"
        assert "games" not in hub.rooms
        await a.call("say", {"text": "gone?", "to": "games"})
        await expect_nothing(b)


async def test_join_refused_by_authorizer_leaks_nothing() -> None:
    """A join the authorize_join hook refuses gets 'forbidden' and no room traffic."""
    hub = chat_hub()

    @hub.authorize_join
    async def only_public(peer: Peer, room: str) -> bool:
        return room.startswith("public:")

    async with (
        serve(hub) as s,
        await WireClient.open(s.ws("/ws")) as a,
        await WireClient.open(s.ws("/ws?room=secret")) as member,
    ):
        reply = await a.request({"type": "join", "room": "secret"})
        assert reply["type"] == "error" and reply["code"] == "forbidden"
        assert "members" not in json.dumps(reply) and "offset" not in reply
        await member.call("say", {"text": "classified", "to": "secret"})
        await expect_nothing(a)
        assert (await a.join("public:x"))["type"] == "ack"


async def test_join_limits_and_room_names() -> None:
    """Bad room names and too many rooms are refused with clear codes."""
    from wirehub import Limits

    hub = chat_hub(limits=Limits(max_rooms_per_peer=2))
    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as c:
        reply = await c.request({"type": "join", "room": ""})
        assert reply["code"] == "invalid_data"
        reply = await c.request({"type": "join", "room": "a\nb"})
        assert reply["code"] == "invalid_data"
        await c.join("r1")
        await c.join("r2")
        await c.join("r1")  # already in: still fine
        reply = await c.request({"type": "join", "room": "r3"})
        assert reply["code"] == "limit_exceeded"


async def test_binary_payloads_both_ways() -> None:
    """Binary emits reach bytes handlers; bytes acks and events come back as binary frames."""
    hub = chat_hub()
    async with serve(hub) as s, await WireClient.open(s.ws("/ws?room=bin")) as c:
        header = json.dumps({"type": "emit", "event": "upload", "id": 5}).encode()
        await c.ws.send(len(header).to_bytes(4, "big") + header + b"\x00\x01\x02\xff")
        reply = await c.recv()
        assert reply == {"type": "ack", "id": 5, "_payload": b"\xff\x02\x01\x00"}
        await hub.to("bin").emit("blob", b"\xde\xad")
        event = await c.recv()
        assert event["event"] == "blob" and event["_payload"] == b"\xde\xad"
        assert event["room"] == "bin" and event["offset"] == 1
        # A JSON-typed handler refuses binary data instead of guessing.
        header = json.dumps({"type": "emit", "event": "move", "id": 6}).encode()
        await c.ws.send(len(header).to_bytes(4, "big") + header + b"xx")
        assert (await c.recv())["code"] == "invalid_data"


async def test_connect_handler_can_reject() -> None:
    """Reject in the connect handler closes with its code before any welcome."""
    hub = Hub()

    @hub.on("connect")
    def connect_(peer: Peer, request: Any) -> None:
        if request.query.get("name") != "ok":
            raise Reject(reason="who are you?", code=4003)

    async with serve(hub) as s:
        async with connect(s.ws("/ws?name=bad")) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), UNIT)
            assert ws.close_code == 4003 and ws.close_reason == "who are you?"
        async with await WireClient.open(s.ws("/ws?name=ok")) as c:
            assert c.welcome["type"] == "welcome"


async def test_messages_sent_before_welcome_are_processed_in_order() -> None:
    """Messages that arrive while the connect handler runs are dispatched after it, in order."""
    hub = chat_hub(on_connect=False)
    gate = asyncio.Event()

    @hub.on("connect")
    async def slow_connect(peer: Peer, request: Any) -> None:
        await gate.wait()

    async with serve(hub) as s, connect(s.ws("/ws")) as ws:
        for i in range(3):
            await ws.send(json.dumps({"type": "emit", "event": "add", "data": [i], "id": i}))
        gate.set()
        first = json.loads(await asyncio.wait_for(ws.recv(), UNIT))
        assert first["type"] == "welcome"
        for i in range(3):
            assert json.loads(await asyncio.wait_for(ws.recv(), UNIT)) == {
                "type": "ack",
                "id": i,
                "data": i,
            }


async def test_disconnect_handler_and_cleanup() -> None:
    """On disconnect the handler runs with the close code, and the peer leaves every room."""
    hub = chat_hub()
    gone: asyncio.Future[tuple[str, DisconnectReason]] = asyncio.get_running_loop().create_future()

    @hub.on("disconnect")
    def disconnect(peer: Peer, reason: DisconnectReason) -> None:
        gone.set_result((peer.id, reason))

    async with serve(hub) as s:
        c = await WireClient.open(s.ws("/ws?room=lobby"))
        await c.ws.close(4000, "bye")
        peer_id, reason = await asyncio.wait_for(gone, UNIT)
        assert peer_id == c.id and reason == DisconnectReason(4000, "bye")
        assert c.id not in hub.peers and "lobby" not in hub.rooms


async def test_presence_announces_joins_and_leaves() -> None:
    """With presence on, members see who joins and leaves, and the join ack lists members."""
    hub = chat_hub(presence=True)

    @hub.on("name")
    def name(peer: Peer, data: str) -> None:
        peer.info["name"] = data

    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as a:
        await a.call("name", "ada")
        await a.join("room")
        b = await WireClient.open(s.ws("/ws"))
        await b.call("name", "bob")
        ack = await b.join("room")
        names = sorted(m["info"]["name"] for m in ack["data"]["members"])
        assert names == ["ada", "bob"]
        joined = await a.recv()
        assert joined == {
            "type": "presence",
            "room": "room",
            "joined": {"id": b.id, "info": {"name": "bob"}},
        }
        await b.close()
        left = await a.recv()
        assert left == {
            "type": "presence",
            "room": "room",
            "left": {"id": b.id, "info": {"name": "bob"}},
        }


async def test_recovery_replays_missed_events_before_the_ack() -> None:
    """Joining with 'since' replays exactly the missed events, then acks recovered=true."""
    hub = chat_hub()
    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as c:
        ack = await c.join("feed")
        position = {"epoch": ack["data"]["epoch"], "offset": ack["data"]["offset"]}
        await c.request({"type": "leave", "room": "feed"})
        for i in range(5):
            await hub.to("feed").emit("tick", i)
        await c.send({"type": "join", "room": "feed", "since": position, "id": 50})
        replayed = [await c.recv() for _ in range(5)]
        assert [e["data"] for e in replayed] == [0, 1, 2, 3, 4]
        assert [e["offset"] for e in replayed] == [1, 2, 3, 4, 5]
        ack = await c.recv()
        assert ack["id"] == 50 and ack["data"]["recovered"] is True and ack["data"]["offset"] == 5
        # A position from another epoch cannot be trusted: recovered=false, nothing replayed.
        reply = await c.join("feed", since={"epoch": "other", "offset": 1})
        assert reply["data"]["recovered"] is False


async def test_history_replay_on_join() -> None:
    """Joining with 'history': N replays the last N kept events of the room."""
    hub = chat_hub()
    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as c:
        for i in range(10):
            await hub.to("chat").emit("m", i)
        await c.send({"type": "join", "room": "chat", "history": 3, "id": 1})
        assert [(await c.recv())["data"] for _ in range(3)] == [7, 8, 9]
        assert (await c.recv())["type"] == "ack"


async def test_per_receiver_order_under_concurrent_publishers() -> None:
    """Each receiver sees every publisher's messages in that publisher's order."""
    hub = chat_hub()
    publishers, per_publisher = 5, 200
    async with serve(hub) as s:
        receivers = [await WireClient.open(s.ws("/ws?room=lobby")) for _ in range(3)]
        senders = [await WireClient.open(s.ws("/ws")) for _ in range(publishers)]

        async def publish(index: int, sender: WireClient) -> None:
            for n in range(per_publisher):
                await sender.send(
                    {"type": "emit", "event": "say", "data": {"text": f"{index}:{n}"}}
                )

        await asyncio.gather(*(publish(i, c) for i, c in enumerate(senders)))
        for receiver in receivers:
            seen: dict[str, list[int]] = {}
            offsets = []
            for _ in range(publishers * per_publisher):
                event = await receiver.recv(timeout=5 * UNIT)
                who, n = event["data"]["text"].split(":")
                seen.setdefault(who, []).append(int(n))
                offsets.append(event["offset"])
            assert all(ns == list(range(per_publisher)) for ns in seen.values())
            assert len(seen) == publishers
            assert offsets == list(range(1, publishers * per_publisher + 1))
        for c in receivers + senders:
            await c.close()


async def test_thousand_clients_each_receive_every_message_exactly_once() -> None:
    """1,000 members of one room each receive all 20 broadcasts, once, in order."""
    hub = Hub()
    count, messages = 1000, 20
    async with serve(hub) as s:
        clients = await asyncio.gather(
            *(
                WireClient.open(s.ws("/ws"), compression=None, open_timeout=10 * UNIT)
                for _ in range(count)
            )
        )
        # One loop answers all 1,000 at once: the last answers wait for the others.
        await asyncio.gather(*(c.join("big", timeout=10 * UNIT) for c in clients))
        for n in range(messages):
            await hub.to("big").emit("n", n)

        async def drain(c: WireClient) -> list[int]:
            got = [(await c.recv(timeout=10 * UNIT))["data"] for _ in range(messages)]
            await expect_nothing(c, timeout=10 * UNIT)
            return got

        results = await asyncio.gather(*(drain(c) for c in clients))
        assert all(r == list(range(messages)) for r in results)
        assert hub.stats["deliveries"] == count * messages
        await asyncio.gather(*(c.close() for c in clients))


async def test_emit_threadsafe_from_another_thread() -> None:
    """emit_threadsafe from a worker thread reaches the room."""
    hub = chat_hub()
    async with serve(hub) as s, await WireClient.open(s.ws("/ws?room=lobby")) as c:
        position = await asyncio.to_thread(
            lambda: hub.emit_threadsafe("from_thread", {"ok": 1}, room="lobby").result(UNIT)
        )
        assert position is not None and position.offset == 1
        event = await c.recv()
        assert event["event"] == "from_thread" and event["data"] == {"ok": 1}


async def test_waiting_on_emit_threadsafe_in_a_sync_handler_fails_instead_of_hanging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``emit_threadsafe(...).result()`` on the loop's thread raises at once; the emit goes out."""
    hub = chat_hub()

    @hub.on("copied_from_a_view")
    def copied(peer: Peer) -> None:
        hub.emit_threadsafe("news", 1, room="lobby").result(timeout=5 * UNIT)  # else: hung

    async with serve(hub) as s, await WireClient.open(s.ws("/ws?room=lobby")) as c:
        answer = await asyncio.wait_for(c.call("copied_from_a_view"), UNIT)
        assert (answer["type"], answer["code"]) == ("error", "internal_error")
        assert (await c.recv())["event"] == "news"
    assert "make it async and await hub.to(room).emit" in caplog.text


async def test_async_handlers_run_inside_a_task() -> None:
    """Async handlers can use asyncio.timeout and current_task (they run in a real task)."""
    hub = Hub()

    @hub.on("timed")
    async def timed(peer: Peer, data: Any) -> bool:
        async with asyncio.timeout(UNIT):
            await asyncio.sleep(0)
        return asyncio.current_task() is not None

    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as c:
        assert (await c.call("timed"))["data"] is True


async def test_volatile_room_events_are_not_numbered_or_kept() -> None:
    """A volatile room emit reaches members without a position and stays out of history."""
    hub = chat_hub()
    async with serve(hub) as s, await WireClient.open(s.ws("/ws?room=lobby")) as c:
        await hub.to("lobby").emit("kept", 1)
        assert await hub.to("lobby").emit("typing", "ada", volatile=True) is None
        await hub.to("lobby").emit("kept", 2)
        events = [await c.recv() for _ in range(3)]
        assert [e["event"] for e in events] == ["kept", "typing", "kept"]
        assert "offset" not in events[1] and events[1]["room"] == "lobby"
        assert [events[0]["offset"], events[2]["offset"]] == [1, 2]
        await c.send({"type": "join", "room": "lobby", "history": 10, "id": 7})
        replay = [await c.recv() for _ in range(2)]
        assert [e["data"] for e in replay] == [1, 2]
        assert (await c.recv())["id"] == 7


async def test_emit_threadsafe_to_one_peer() -> None:
    """``emit_threadsafe(..., peer=)`` from a worker thread reaches that peer only."""
    hub = chat_hub()
    async with (
        serve(hub) as s,
        await WireClient.open(s.ws("/ws?room=lobby")) as target,
        await WireClient.open(s.ws("/ws?room=lobby")) as other,
    ):
        peer = hub.peers[target.id]
        for who in (peer, peer.id):  # a Peer or its id
            future = hub.emit_threadsafe("dm", "hi", peer=who)
            await asyncio.to_thread(future.result, UNIT)
            assert (await target.recv())["data"] == "hi"
        await expect_nothing(other)
        with pytest.raises(ConfigError, match="not both"):
            hub.emit_threadsafe("dm", "hi", room="lobby", peer=peer)


async def test_setting_an_attribute_on_a_peer_points_to_peer_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``peer.username = ...`` fails (a Peer has fixed attributes) with a note: use peer.state."""
    hub = Hub()

    @hub.on("rename")
    def rename(peer: Peer, name: str) -> None:
        peer.username = name  # type: ignore[attr-defined]

    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as c:
        reply = await c.call("rename", "ada")
    assert reply["code"] == "internal_error"
    [record] = [r for r in caplog.records if r.exc_info]
    assert "peer.state['username'] = ..." in "".join(record.exc_info[1].__notes__)  # type: ignore[index]
