"""Sans-I/O server side of one WebSocket connection.

RFC 6455 framing, masking, close handling and permessage-deflate (RFC 7692)
come from the ``websockets`` library's ``ServerProtocol``. This module adds
what its asyncio layer normally adds on top, done in our own layer:

- messages assembled from fragments, with no cap on the fragment count (the
  size limit already bounds memory; websockets' asyncio layer caps at 4096);
- UTF-8 validated fragment by fragment, so a bad text message fails fast;
- a close frame between two fragments closes cleanly (RFC 6455 §5.4 allows
  control frames in the middle of a fragmented message).

Bytes in with :meth:`receive_data`; messages out; bytes to write from
:meth:`data_to_send`. No I/O, no clock.
"""

from __future__ import annotations

import codecs
import logging
import math
import struct
import zlib
from collections.abc import Sequence
from typing import Any

from websockets.datastructures import Headers
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import ExtensionParameter, Subprotocol

from wirehub.codes import can_send
from wirehub.exceptions import ConfigError

__all__ = [
    "MAX_CLOSE_REASON",
    "Message",
    "WebSocketProtocol",
    "close_reason",
    "encode_deflated_frame",
    "encode_frame",
    "ping_payload",
    "ping_sent_at",
]

# websockets logs every open and close at INFO; the server logs what matters.
_engine_logger = logging.getLogger("wirehub.engine")
_engine_logger.setLevel(logging.WARNING)

Message = str | bytes

_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class _Engine(ServerProtocol):
    """websockets' ServerProtocol with RFC-correct close-between-fragments."""

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE:
            # websockets answers 1002 "incomplete fragmented message" here; the
            # RFC lets a close interrupt a fragmented message (Autobahn 7.1.5).
            self.current_size = None
        super().recv_frame(frame)


def encode_frame(payload: bytes, text: bool) -> bytes:
    """Build one unmasked, uncompressed server frame carrying ``payload``.

    Server frames are unmasked, so the bytes are the same for every receiver:
    a broadcast builds this once and writes it many times. An uncompressed
    frame is valid on a connection that negotiated permessage-deflate.
    """
    # The header of an unmasked, unfragmented, uncompressed frame (RFC 6455
    # §5.2) is two to ten bytes. Building it here instead of with websockets'
    # Frame.serialize (BytesIO, checks, extensions) cut echo CPU per message
    # by ~10 % (bench/README.md); frames we *receive* are still parsed by it.
    first = 0x81 if text else 0x82  # FIN + opcode
    length = len(payload)
    if length < 126:
        return bytes((first, length)) + payload
    if length < 65536:
        return _HEADER_16.pack(first, 126, length) + payload
    return _HEADER_64.pack(first, 127, length) + payload


_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


MAX_CLOSE_REASON = 123
"""Bytes of UTF-8 a close frame's reason may hold (125, less the 2-byte code: RFC 6455 §5.5)."""


def close_reason(code: int, reason: str) -> str:
    """``reason`` cut to fit a close frame, at a character boundary; checks ``code``.

    Raises ``ConfigError`` for a code no close frame may carry (1005, 1006,
    1015, below 1000, 5000 and up: ``wirehub.codes.can_send``), so the
    application learns of it where it asked, and the connection still closes.
    """
    if not can_send(code):
        raise ConfigError(f"close code {code} cannot be sent (RFC 6455 §7.4)")
    data = reason.encode("utf-8", "replace")  # a lone surrogate cannot be sent: "?"
    return data[:MAX_CLOSE_REASON].decode("utf-8", "ignore")  # "ignore" drops a cut character


COMPRESSION_THRESHOLD = 256
"""Messages shorter than this are sent uncompressed even when deflate is on:
for small JSON the saving is a few bytes and the cost is CPU and memory."""

WINDOW_BITS = 12
"""The server's deflate window (4 KiB): each message is compressed on its own,
and zlib's state per compression grows with the window (15 would be 144 KiB)."""


class _LazyDeflate(PerMessageDeflate):
    """permessage-deflate that allocates zlib state on first use, not at the handshake.

    websockets builds the decoder eagerly (tens of KiB per idle connection,
    USERS.md #8); most connections never receive a compressed message.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__dict__.pop("decoder", None)

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        if frame.rsv1 and "decoder" not in self.__dict__:
            self.decoder = zlib.decompressobj(wbits=-self.remote_max_window_bits)
        return super().decode(frame, max_size=max_size)


class _LazyDeflateFactory(ServerPerMessageDeflateFactory):
    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, ext = super().process_request_params(params, accepted_extensions)
        lazy = _LazyDeflate(
            ext.remote_no_context_takeover,
            ext.local_no_context_takeover,
            ext.remote_max_window_bits,
            ext.local_max_window_bits,
            ext.compress_settings,
        )
        return response, lazy


def _deflate_factory() -> ServerPerMessageDeflateFactory:
    # server_no_context_takeover: every message is compressed on its own, so
    # no compressor lives between messages, and one deflated broadcast frame
    # is valid for every receiver. client_max_window_bits caps the
    # per-connection decompressor at a 4 KiB window.
    return _LazyDeflateFactory(
        server_no_context_takeover=True,
        server_max_window_bits=WINDOW_BITS,
        client_max_window_bits=WINDOW_BITS,
        compress_settings={"memLevel": 5},
    )


_broadcast_deflate = PerMessageDeflate(False, True, 15, WINDOW_BITS, {"memLevel": 5})


def encode_deflated_frame(payload: bytes, text: bool) -> bytes:
    """Like ``encode_frame``, compressed for clients whose deflate shares broadcasts."""
    frame = Frame(Opcode.TEXT if text else Opcode.BINARY, payload)
    return frame.serialize(mask=False, extensions=[_broadcast_deflate])


_PING = struct.Struct("!d")


def ping_payload(now: float) -> bytes:
    """The payload of a server ping: when it was sent (``time.monotonic()``, seconds).

    The client echoes it in its pong (RFC 6455 §5.5.3), so the round trip is
    known from the pong alone, with no table of pings in flight.
    """
    return _PING.pack(now)


def ping_sent_at(payload: bytes) -> float | None:
    """When the ping this pong answers was sent, or None for a pong that is not ours."""
    if len(payload) != _PING.size:
        return None
    (sent,) = _PING.unpack(payload)
    return float(sent) if math.isfinite(sent) else None


def _switching(key: str, extensions: str | None, protocol: str | None) -> Headers:
    headers = Headers()
    headers["Upgrade"] = "websocket"
    headers["Connection"] = "Upgrade"
    headers["Sec-WebSocket-Accept"] = key
    if extensions is not None:
        headers["Sec-WebSocket-Extensions"] = extensions
    if protocol is not None:
        headers["Sec-WebSocket-Protocol"] = protocol
    return headers


def _serialize_101(headers: Headers) -> bytes:
    lines = [f"{name}: {value}\r\n" for name, value in headers.raw_items()]
    return ("HTTP/1.1 101 Switching Protocols\r\n" + "".join(lines) + "\r\n").encode()


class WebSocketProtocol:
    """One server-side WebSocket connection, from handshake to close."""

    def __init__(
        self,
        *,
        max_message_size: int | None,
        compression: bool = True,
        subprotocols: Sequence[str] | None = None,
    ) -> None:
        extensions = [_deflate_factory()] if compression else None
        # Made OPEN: the engine's parser starts in frame mode. The handshake
        # is checked by ``accept`` before a single frame is read.
        self.engine = _Engine(
            extensions=extensions,
            subprotocols=[Subprotocol(p) for p in subprotocols] if subprotocols else None,
            max_size=max_message_size,
            logger=_engine_logger,
            state=State.OPEN,
        )
        self._parts: list[bytes] = []  # binary fragments so far
        self._chars: list[str] = []  # decoded text fragments so far
        self._text: codecs.IncrementalDecoder | None = None
        self._fragmented = False
        self.pongs: list[bytes] | None = None  # payloads of pongs received, for the caller to take

    # -- handshake ---------------------------------------------------------

    def accept(self, path: str, headers: Headers) -> Response:
        """Validate the upgrade request; return the response to send (101 or an error).

        The HTTP request was already parsed by the server, so we hand the
        engine a ``Request`` object instead of bytes. The checks and the
        negotiation (key, version, extensions, subprotocol) are websockets'
        ``process_request``; only the 101 is written here: websockets'
        ``accept`` adds a ``Date`` (optional on a 1xx, RFC 9110 §6.6.1, and
        formatting it was 6 % of a handshake's CPU) and builds and serializes
        a header table (bench/README.md, "Handshake profile").
        """
        engine = self.engine
        request = Request(path, headers)
        try:
            key, extensions, protocol = engine.process_request(request)
        except Exception:
            # A refusal: websockets' own answer (status, text, EOF), from the
            # state it expects. Its checks fail again the same way.
            engine.state = State.CONNECTING
            response = engine.accept(request)
            engine.send_response(response)
            return response
        response = Response(101, "Switching Protocols", _switching(key, extensions, protocol))
        engine.writes.append(_serialize_101(response.headers))
        return response

    @property
    def subprotocol(self) -> str | None:
        return self.engine.subprotocol

    @property
    def compression(self) -> bool:
        return bool(self.engine.extensions)

    @property
    def shares_deflate(self) -> bool:
        """Whether deflated broadcast frames (``encode_deflated_frame``) suit this client."""
        return any(
            isinstance(ext, PerMessageDeflate)
            and ext.local_no_context_takeover
            and ext.local_max_window_bits == WINDOW_BITS
            for ext in self.engine.extensions
        )

    # -- receiving ---------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Message]:
        """Feed bytes from the network; return the complete messages they finish."""
        self.engine.receive_data(data)
        return self._assemble(self.engine.events_received())

    def receive_eof(self) -> None:
        self.engine.receive_eof()

    def _assemble(self, events: list[Request | Response | Frame]) -> list[Message]:
        messages: list[Message] = []
        for frame in events:
            if not isinstance(frame, Frame):  # only frames arrive once OPEN
                continue
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if frame.fin:
                    if opcode is Opcode.BINARY:
                        messages.append(bytes(frame.data))
                        continue
                    try:
                        messages.append(bytes(frame.data).decode())
                    except UnicodeDecodeError as exc:
                        return self._invalid_utf8(messages, exc)
                    continue
                self._fragmented = True
                self._text = _utf8_decoder() if opcode is Opcode.TEXT else None
            elif opcode is Opcode.CONT:
                if not self._fragmented:  # the engine already failed the connection
                    continue
            else:
                if opcode is Opcode.CLOSE:
                    self._reset()
                elif opcode is Opcode.PONG:
                    self.pongs = (self.pongs or []) + [bytes(frame.data)]
                continue
            # A fragment of a message (first or continuation).
            if self._text is not None:
                try:
                    text = self._text.decode(frame.data, final=frame.fin)
                except UnicodeDecodeError as exc:
                    return self._invalid_utf8(messages, exc)
                self._chars.append(text)
            else:
                self._parts.append(bytes(frame.data))
            if frame.fin:
                if self._text is not None:
                    messages.append("".join(self._chars))
                else:
                    messages.append(b"".join(self._parts))
                self._reset()
        return messages

    def _invalid_utf8(self, messages: list[Message], exc: UnicodeDecodeError) -> list[Message]:
        self._reset()
        self.engine.fail(1007, f"invalid UTF-8: {exc.reason}")
        return messages

    def _reset(self) -> None:
        self._parts = []
        self._chars = []
        self._text = None
        self._fragmented = False

    # -- sending -----------------------------------------------------------

    def send(self, message: Message) -> None:
        """Queue ``message``, compressed if the client negotiated it and it is not tiny."""
        if self.engine.state is not State.OPEN:
            raise RuntimeError("cannot send: the WebSocket is not open")
        self.engine.writes.append(self.frame(message))

    def send_text(self, payload: bytes) -> None:
        """Queue a text message given as UTF-8 bytes (e.g. encoded JSON)."""
        if self.engine.state is not State.OPEN:
            raise RuntimeError("cannot send: the WebSocket is not open")
        self.engine.writes.append(self.text_frame(payload))

    def frame(self, message: Message) -> bytes:
        """The frame carrying ``message``, compressed if negotiated and not tiny.

        Built whatever the engine's state: the server may still answer the
        messages that arrived in the same read as the client's close frame
        (they are written before the close reply); whether to send is the
        caller's decision.
        """
        if isinstance(message, str):
            return self.text_frame(message.encode())
        if len(message) < COMPRESSION_THRESHOLD or not self.engine.extensions:
            return encode_frame(message, False)
        return self._deflated(Opcode.BINARY, message)

    def text_frame(self, payload: bytes) -> bytes:
        """Like ``frame``, for a text message given as UTF-8 bytes (e.g. encoded JSON)."""
        if len(payload) < COMPRESSION_THRESHOLD or not self.engine.extensions:
            # An uncompressed frame is always valid (RFC 7692 §6: per message).
            return encode_frame(payload, True)
        return self._deflated(Opcode.TEXT, payload)

    def _deflated(self, opcode: Opcode, payload: bytes) -> bytes:
        # What the engine's send_text/send_binary append, without their check
        # of the state (see ``frame``).
        return Frame(opcode, payload).serialize(mask=False, extensions=self.engine.extensions)

    def send_ping(self, data: bytes = b"") -> None:
        self.engine.send_ping(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (no-op if it already started).

        Raises ``ConfigError`` for a code no close frame may carry; a reason
        too long for one is cut (``close_reason``).
        """
        reason = close_reason(code, reason)
        if self.engine.state is State.OPEN:
            self.engine.send_close(code, reason)

    def fail(self, code: int, reason: str = "") -> None:
        """Close at once after a fault, without waiting for the client."""
        reason = close_reason(code, reason)
        if self.engine.state is State.OPEN or self.engine.state is State.CLOSING:
            self.engine.fail(code, reason)

    def data_to_send(self) -> list[bytes]:
        """Bytes to write; an empty ``bytes`` means: close the TCP connection."""
        return self.engine.data_to_send()

    # -- state -------------------------------------------------------------

    @property
    def open(self) -> bool:
        return self.engine.state is State.OPEN

    @property
    def closed(self) -> bool:
        return self.engine.state is State.CLOSED

    @property
    def close_code(self) -> int:
        """The code to report to the application (1006 if no close frame came).

        Read from the close frame received (RFC 6455 §7.1.5), not from the
        engine's ``close_code``: that stays None until the engine is told of
        EOF, and the server usually closes TCP itself right after the closing
        handshake, so the code the client sent would be lost.
        """
        received = self.engine.close_rcvd
        return 1006 if received is None else int(received.code)

    @property
    def close_reason(self) -> str:
        received = self.engine.close_rcvd
        return "" if received is None else received.reason
