"""Property tests: the client-message decoder and the Peer dispatcher never fail unhandled.

Every input either decodes to a protocol message or raises ``DecodeError``;
every message given to a Peer gets a valid dispatch or an error reply: with
an ``id``, exactly one ``ack`` or ``error`` carrying it; without, at most one
``error``; never an exception, never a closed connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import struct
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirehub import Hub, Peer
from wirehub.http.messages import Headers, Request
from wirehub.protocol import messages as wire
from wirehub.security import Rate, RateLimits

# -- strategies -------------------------------------------------------------------

KEYS = ["type", "event", "data", "id", "room", "since", "history", "token", "epoch", "offset"]
TYPES = ["emit", "join", "leave", "ping", "auth", "welcome", "ack", "", "EMIT", None, 1]
EVENTS = ["echo", "typed", "move", "nodata", "slow", "fails", "bin", "connect", "nope", ""]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def protocol_like(draw: st.DrawFn) -> dict[str, Any]:
    """An object close to a protocol message: right keys, often right types, sometimes not."""
    message: dict[str, Any] = {"type": draw(st.sampled_from(TYPES))}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=5, unique=True)):
        if key == "event":
            message[key] = draw(st.sampled_from(EVENTS) | json_values)
        elif key == "id":
            message[key] = draw(st.integers(min_value=-5, max_value=2**64) | json_values)
        elif key == "room":
            message[key] = draw(st.sampled_from(["lobby", "", "x" * 300, "a\x00b"]) | json_values)
        elif key == "since":
            since = st.fixed_dictionaries({"epoch": st.text(max_size=5), "offset": st.integers()})
            message[key] = draw(since | json_values)
        else:
            message[key] = draw(json_values)
    return message


def as_text(message: Any) -> str:
    return json.dumps(message, allow_nan=False)


def as_binary(header: bytes, payload: bytes, lie: int = 0) -> bytes:
    return struct.pack("!I", max(0, len(header) + lie)) + header + payload


texts = st.one_of(
    protocol_like().map(as_text),
    json_values.map(as_text),
    st.text(max_size=200),
    protocol_like().map(as_text).map(lambda s: s[: len(s) // 2]),  # truncated JSON
)
binaries = st.one_of(
    st.binary(max_size=200),
    st.builds(
        as_binary,
        protocol_like().map(lambda m: as_text(m).encode()),
        st.binary(max_size=50),
        st.integers(min_value=-10, max_value=10),
    ),
)
messages = texts | binaries


# -- the decoder --------------------------------------------------------------------


@settings(max_examples=1500, deadline=None)
@given(messages)
def test_decode_client_returns_a_message_or_raises_decode_error(raw: str | bytes) -> None:
    """``decode_client`` never raises anything but ``DecodeError``, and returns real messages."""
    try:
        message, payload = wire.decode_client(raw)
    except wire.DecodeError as exc:
        assert str(exc)
        return
    assert isinstance(message, wire.ClientMessage)
    assert payload is None or isinstance(payload, bytes)
    assert (payload is not None) == isinstance(raw, bytes)


# -- the dispatcher -----------------------------------------------------------------


@dataclasses.dataclass
class FakeTransport:
    """Records what a Peer sends; never touches a socket."""

    request: Request = dataclasses.field(
        default_factory=lambda: Request("GET", "/ws", "", Headers(), client=("127.0.0.1", 1))
    )
    subprotocol: str | None = None
    writing_paused: bool = False
    shares_deflate: bool = False
    buffered: int = 0
    sent: list[Any] = dataclasses.field(default_factory=list)
    closed: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    paused: bool = False
    closing: bool = False

    def send(self, message: str | bytes) -> None:
        self.sent.append(_decode_out(message))

    def send_text(self, payload: bytes) -> None:
        self.sent.append(json.loads(payload))

    def send_frame(self, frame: bytes) -> None:
        self.sent.append({"type": "frame"})

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed.append((code, reason))
        self.closing = True

    async def drain(self) -> None:
        pass

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def _decode_out(message: str | bytes) -> Any:
    if isinstance(message, str):
        return json.loads(message)
    header, _ = wire.unpack_binary(message)
    return json.loads(header)


class Move(msgspec.Struct):
    x: int
    y: int


def dispatch_hub(**kwargs: Any) -> Hub:
    hub = Hub(**kwargs)

    @hub.on("echo")
    def echo(peer: Peer, data: Any) -> Any:
        return data

    @hub.on("typed")
    def typed(peer: Peer, data: dict[str, int]) -> int:
        return sum(data.values())

    @hub.on("move")
    async def move(peer: Peer, data: Move) -> list[int]:
        return [data.x, data.y]

    @hub.on("nodata")
    def nodata(peer: Peer) -> str:
        return "ok"

    @hub.on("slow")
    async def slow(peer: Peer, data: Any) -> Any:
        await asyncio.sleep(0)
        return data

    @hub.on("fails")
    def fails(peer: Peer, data: Any) -> None:
        raise RuntimeError("boom")

    @hub.on("bin")
    def binary(peer: Peer, data: bytes) -> bytes:
        return data

    return hub


def expected_id(raw: str | bytes) -> tuple[bool, int | None]:
    """Whether ``raw`` decodes, and its request id (an ``ack``/``error`` answers a call of
    the server's: it is no request, and one no call waits for is ignored)."""
    try:
        message, _ = wire.decode_client(raw)
    except wire.DecodeError:
        return False, None
    return True, None if isinstance(message, wire.Ack | wire.Error) else message.id


def readable_id(raw: str | bytes) -> int | None:
    """The id an error about ``raw`` must carry: an integer ``id`` of a JSON object Python's
    parser reads (not an ``ack``'s or ``error``'s: those answer the server's calls)."""
    try:
        document = json.loads(raw if isinstance(raw, str) else wire.unpack_binary(raw)[0])
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or document.get("type") in ("ack", "error"):
        return None
    value = document.get("id")
    return value if type(value) is int and -(2**63) <= value < 2**63 else None


async def check_dispatch(hub: Hub, batch: list[str | bytes]) -> None:
    transport = FakeTransport()
    peer = Peer(hub.node, transport)
    peer.start()
    assert transport.sent[0]["type"] == "welcome"
    del transport.sent[:]
    for raw in batch:
        peer.message_received(raw)  # must not raise
        for _ in range(20):  # let async handlers and joins finish
            if not peer._tasks:
                break
            await asyncio.sleep(0)
        out, transport.sent[:] = list(transport.sent), []
        answers = [m for m in out if m["type"] in ("ack", "error")]
        decodes, request_id = expected_id(raw)
        if not decodes:
            [answer] = answers
            assert answer["type"] == "error" and answer.get("id") == readable_id(raw), (raw, out)
            assert answer["code"] in ("bad_message", "invalid_data", "rate_limited"), (raw, out)
        elif request_id is not None:
            assert [m.get("id") for m in answers] == [request_id], (raw, out)
        else:
            assert all(m["type"] == "error" and "id" not in m for m in answers), (raw, out)
            assert len(answers) <= 1, (raw, out)
        assert all(m.get("code") != "internal_error" or "fails" in str(raw) for m in answers)
    assert transport.closed == [], transport.closed
    peer.connection_lost(1000, "")


def run_dispatch(hub: Hub, batch: list[str | bytes]) -> None:
    """Start ``hub``, feed ``batch`` to a peer through ``check_dispatch``, stop it."""

    async def run() -> None:
        await hub.start()
        try:
            await check_dispatch(hub, batch)
        finally:
            await hub.stop()

    asyncio.run(run())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, min_size=1, max_size=8))
def test_peer_answers_every_message(batch: list[str | bytes]) -> None:
    """Each message gets a dispatch or an error; requests exactly one answer with their id."""
    hub = dispatch_hub()

    run_dispatch(hub, batch)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, min_size=1, max_size=8))
def test_peer_with_limits_and_hooks_answers_every_message(batch: list[str | bytes]) -> None:
    """The same with rate limits and an emit authorizer: refusals are answers too."""
    hub = dispatch_hub(rate_limits=RateLimits(messages=Rate(4, per=60.0), strikes=None))
    hub.authorize_emit(lambda peer, event, data: event != "echo" or data != 1)
    hub.authorize_join(lambda peer, room: room != "lobby")

    run_dispatch(hub, batch)
