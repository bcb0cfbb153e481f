"""The sans-I/O WebSocket engine, fed bytes directly (also one byte at a time)."""

from __future__ import annotations

import base64
import secrets
import struct

import pytest

from tests.conftest import BINARY, CLOSE, CONT, PING, PONG, TEXT, close_frame, frame
from wirehub.http.messages import Headers
from wirehub.protocol.websocket import Message, WebSocketProtocol, encode_frame


def handshake_headers(**extra: str) -> Headers:
    headers = Headers(
        Host="127.0.0.1",
        Upgrade="websocket",
        Connection="Upgrade",
        **{
            "Sec-WebSocket-Key": base64.b64encode(secrets.token_bytes(16)).decode(),
            "Sec-WebSocket-Version": "13",
        },
    )
    for name, value in extra.items():
        headers[name.replace("_", "-")] = value
    return headers


def opened(**kwargs: object) -> WebSocketProtocol:
    """A protocol past a successful handshake, its 101 response already taken."""
    kwargs.setdefault("max_message_size", 1 << 20)
    ws = WebSocketProtocol(**kwargs)  # type: ignore[arg-type]
    assert ws.accept("/", handshake_headers()).status_code == 101
    ws.data_to_send()
    return ws


def parse(chunks: list[bytes]) -> list[tuple[int, bytes]]:
    """Split the server's output into ``(opcode, payload)``; ``(-1, b"")`` marks EOF."""
    frames: list[tuple[int, bytes]] = []
    for chunk in chunks:
        if not chunk:
            frames.append((-1, b""))
            continue
        while chunk:
            assert chunk[0] & 0x80 and not chunk[1] & 0x80
            length, offset = chunk[1] & 0x7F, 2
            if length == 126:
                (length,), offset = struct.unpack("!H", chunk[2:4]), 4
            elif length == 127:
                (length,), offset = struct.unpack("!Q", chunk[2:10]), 10
            frames.append((chunk[0] & 0x0F, chunk[offset : offset + length]))
            chunk = chunk[offset + length :]
    return frames


def feed_bytewise(ws: WebSocketProtocol, data: bytes) -> list[Message]:
    messages: list[Message] = []
    for i in range(len(data)):
        messages += ws.receive_data(data[i : i + 1])
    return messages


def closed_with(ws: WebSocketProtocol) -> tuple[int, bytes]:
    """The close frame the server sent, checking it then asked to close TCP."""
    frames = parse(ws.data_to_send())
    assert frames[-1] == (-1, b""), frames
    opcode, payload = frames[-2]
    assert opcode == CLOSE
    return struct.unpack("!H", payload[:2])[0], payload[2:]


# -- handshake -------------------------------------------------------------------


def test_accept_answers_101_with_accept_key() -> None:
    """A valid upgrade request gets a 101 with the RFC 6455 §4.2.2 accept hash."""
    ws = WebSocketProtocol(max_message_size=None)
    headers = handshake_headers()
    response = ws.accept("/", headers)
    assert response.status_code == 101
    [raw] = ws.data_to_send()
    assert raw.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: " in raw
    assert ws.open


def test_accept_refuses_a_request_without_key() -> None:
    """A handshake missing Sec-WebSocket-Key is refused with 400 and the engine never opens."""
    ws = WebSocketProtocol(max_message_size=None)
    headers = handshake_headers()
    del headers["Sec-WebSocket-Key"]
    assert ws.accept("/", headers).status_code == 400
    assert not ws.open
    assert ws.data_to_send()[0].startswith(b"HTTP/1.1 400")


def test_first_frame_can_arrive_with_the_handshake_bytes() -> None:
    """After accept the engine parses frames from the first byte it is fed."""
    ws = opened()
    assert ws.receive_data(frame(TEXT, b"hi")) == ["hi"]


@pytest.mark.parametrize("enabled", [True, False])
def test_compression_negotiated_only_when_enabled(enabled: bool) -> None:
    """permessage-deflate is accepted when offered and enabled, never otherwise."""
    ws = WebSocketProtocol(max_message_size=None, compression=enabled)
    headers = handshake_headers(Sec_WebSocket_Extensions="permessage-deflate")
    response = ws.accept("/", headers)
    assert ("permessage-deflate" in response.headers.get("Sec-WebSocket-Extensions", "")) is enabled
    assert ws.compression is enabled


def test_subprotocol_negotiated() -> None:
    """The first server subprotocol that the client offers is selected."""
    ws = WebSocketProtocol(max_message_size=None, subprotocols=["chat.v2", "chat.v1"])
    ws.accept("/", handshake_headers(Sec_WebSocket_Protocol="chat.v1, chat.v2"))
    assert ws.subprotocol in ("chat.v1", "chat.v2")
    refused = WebSocketProtocol(max_message_size=None, subprotocols=["chat.v2"])
    refused.accept("/", handshake_headers(Sec_WebSocket_Protocol="other"))
    assert refused.subprotocol is None


# -- receiving -------------------------------------------------------------------


def test_text_binary_and_empty_messages() -> None:
    """Text frames become str, binary frames bytes, and empty payloads are kept."""
    ws = opened()
    data = frame(TEXT, "héllo".encode()) + frame(BINARY, b"\x00\xff") + frame(TEXT) + frame(BINARY)
    assert ws.receive_data(data) == ["héllo", b"\x00\xff", "", b""]


def test_one_byte_at_a_time() -> None:
    """Frames split at every byte boundary give the same messages, each once."""
    ws = opened()
    data = (
        frame(TEXT, "a€b".encode())
        + frame(BINARY, bytes(range(200)))
        + frame(TEXT, b"x" * 70000)
        + frame(PING, b"p")
    )
    assert feed_bytewise(ws, data) == ["a€b", bytes(range(200)), "x" * 70000]
    assert parse(ws.data_to_send()) == [(PONG, b"p")]


def test_fragmented_message_with_utf8_split_across_fragments() -> None:
    """A text message is assembled from fragments even when a character spans two."""
    euro = "€".encode()  # three bytes
    data = (
        frame(TEXT, b"a" + euro[:1], fin=False)
        + frame(CONT, euro[1:2], fin=False)
        + frame(PING, b"mid")  # control frames may interleave (RFC 6455 §5.4)
        + frame(CONT, euro[2:] + b"b")
    )
    assert feed_bytewise(opened(), data) == ["a€b"]
    assert opened().receive_data(data) == ["a€b"]


def test_fragmented_binary_message() -> None:
    """Binary fragments are joined into one bytes message."""
    ws = opened()
    data = frame(BINARY, b"ab", fin=False) + frame(CONT, b"", fin=False) + frame(CONT, b"cd")
    assert ws.receive_data(data) == [b"abcd"]


def test_many_fragments_are_not_capped() -> None:
    """A message in 10,000 fragments is accepted: only its size is limited."""
    ws = opened()
    data = frame(BINARY, b"x", fin=False) + frame(CONT, b"x", fin=False) * 9998 + frame(CONT, b"x")
    assert ws.receive_data(data) == [b"x" * 10000]
    assert ws.open


def test_invalid_utf8_closes_1007() -> None:
    """A text frame that is not UTF-8 fails the connection with 1007."""
    ws = opened()
    assert ws.receive_data(frame(TEXT, b"ok") + frame(TEXT, b"\xff\xfe")) == ["ok"]
    code, _ = closed_with(ws)
    assert code == 1007
    assert not ws.open


def test_invalid_utf8_fails_fast_in_the_first_fragment() -> None:
    """Bad UTF-8 in a first fragment closes 1007 before the message is complete."""
    ws = opened()
    assert ws.receive_data(frame(TEXT, b"ok\xc0\xaf", fin=False)) == []
    assert closed_with(ws)[0] == 1007


def test_utf8_cut_short_at_the_last_fragment_closes_1007() -> None:
    """A text message ending mid-character is invalid even if each fragment looked fine."""
    ws = opened()
    euro = "€".encode()
    assert ws.receive_data(frame(TEXT, euro[:2], fin=False) + frame(CONT, b"")) == []
    assert closed_with(ws)[0] == 1007


def test_message_too_big_closes_1009() -> None:
    """A message over max_message_size, even spread over fragments, closes 1009."""
    ws = opened(max_message_size=10)
    assert ws.receive_data(frame(BINARY, b"x" * 10)) == [b"x" * 10]
    ws.receive_data(frame(BINARY, b"x" * 6, fin=False) + frame(CONT, b"x" * 6))
    assert closed_with(ws)[0] == 1009


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(frame(TEXT, b"x", rsv=0b100), id="rsv1-without-extension"),
        pytest.param(frame(TEXT, b"x", rsv=0b010), id="rsv2"),
        pytest.param(frame(TEXT, b"x", mask=False), id="unmasked"),
        pytest.param(frame(0x3, b"x"), id="reserved-opcode"),
        pytest.param(frame(CONT, b"x"), id="continuation-without-start"),
        pytest.param(frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), id="new-mid-message"),
        pytest.param(frame(PING, b"x", fin=False), id="fragmented-control"),
        pytest.param(frame(PING, b"x" * 126), id="control-over-125"),
    ],
)
def test_protocol_errors_close_1002(data: bytes) -> None:
    """Frames that break RFC 6455 framing rules fail the connection with 1002."""
    ws = opened(compression=False)
    assert ws.receive_data(data) == []
    assert closed_with(ws)[0] == 1002
    # Nothing more is processed after failing (RFC 6455 §7.1.7).
    assert ws.receive_data(frame(TEXT, b"late")) == []


def test_client_close_is_echoed_and_reported() -> None:
    """A client close frame is echoed, then code and reason are reported once TCP ends."""
    ws = opened()
    ws.receive_data(close_frame(4000, "bye"))
    assert closed_with(ws) == (4000, b"bye")
    assert not ws.open
    ws.receive_eof()
    assert ws.closed
    assert (ws.close_code, ws.close_reason) == (4000, "bye")


def test_close_between_fragments_is_clean() -> None:
    """A close frame in the middle of a fragmented message closes normally, not 1002."""
    ws = opened()
    ws.receive_data(frame(TEXT, b"a", fin=False) + close_frame(1000))
    assert closed_with(ws)[0] == 1000


def test_close_code_is_1006_without_a_close_frame() -> None:
    """A connection that ends without a close frame reports 1006 and no reason."""
    ws = opened()
    ws.receive_eof()
    assert (ws.close_code, ws.close_reason) == (1006, "")


# -- sending ---------------------------------------------------------------------


def test_send_frames_text_and_binary_unmasked() -> None:
    """send() emits one unmasked frame per message with the right opcode."""
    ws = opened(compression=False)
    ws.send("é")
    ws.send(b"\x01")
    ws.send_text(b'{"json":1}')
    ws.send_ping(b"k")
    assert parse(ws.data_to_send()) == [
        (TEXT, "é".encode()),
        (BINARY, b"\x01"),
        (TEXT, b'{"json":1}'),
        (PING, b"k"),
    ]


def test_server_close_then_client_answer() -> None:
    """close() sends a close frame once; the client's answer completes the handshake."""
    ws = opened()
    ws.close(4001, "x")
    ws.close(1000)  # already closing: no second frame
    assert parse(ws.data_to_send()) == [(CLOSE, struct.pack("!H", 4001) + b"x")]
    ws.receive_data(close_frame(4001, "x"))
    assert parse(ws.data_to_send()) == [(-1, b"")]


def test_fail_sends_close_and_eof_once() -> None:
    """fail() sends its code and asks for TCP to close; a second fail adds nothing."""
    ws = opened()
    ws.fail(1011, "keepalive ping timeout")
    assert closed_with(ws) == (1011, b"keepalive ping timeout")
    ws.fail(1011)
    assert ws.data_to_send() == []


@pytest.mark.parametrize("message", ["héllo", b"\x00" * 300, "", b"x" * 70000])
def test_encode_frame_matches_send(message: Message) -> None:
    """encode_frame builds the same bytes send() writes on an uncompressed connection."""
    ws = opened(compression=False)
    ws.send(message)
    text = isinstance(message, str)
    payload = message.encode() if isinstance(message, str) else message
    assert b"".join(ws.data_to_send()) == encode_frame(payload, text)
    assert parse([encode_frame(payload, text)]) == [(TEXT if text else BINARY, payload)]
