"""A protocol-v1 client over the HTTP fallback (docs/PROTOCOL.md §14), for hub tests.

Written from the specification with aiohttp and ``struct``: records are
parsed here, not by the server's code, so a shared bug cannot hide. Its
interface is ``WireClient``'s, so a test can run the same steps over both.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import struct
from typing import Any

import aiohttp

from tests.conftest import UNIT
from tests.hub.wire import Requests

TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9


def record(opcode: int, payload: bytes) -> bytes:
    """One client record: a WebSocket frame header without a mask, then the payload."""
    length = len(payload)
    if length < 126:
        return bytes((0x80 | opcode, length)) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, length) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, length) + payload


def text(message: dict[str, Any]) -> bytes:
    return record(TEXT, json.dumps(message).encode())


def records(body: bytes) -> list[tuple[int, bytes]]:
    """Split a server body into ``(opcode, payload)``; a cut record is an error."""
    out = []
    at = 0
    while at < len(body):
        first, second = body[at], body[at + 1]
        assert first & 0x80 and not second & 0x80, body[at : at + 2]
        length, at = second & 0x7F, at + 2
        if length == 126:
            (length,) = struct.unpack_from("!H", body, at)
            at += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", body, at)
            at += 8
        assert at + length <= len(body), "a record was cut"
        out.append((first & 0x0F, body[at : at + length]))
        at += length
    return out


def decode(opcode: int, payload: bytes) -> dict[str, Any]:
    if opcode == BINARY:
        (length,) = struct.unpack_from("!I", payload)
        message: dict[str, Any] = json.loads(payload[4 : 4 + length])
        message["_payload"] = payload[4 + length :]
        return message
    if opcode == CLOSE:
        (code,) = struct.unpack_from("!H", payload)
        return {"type": "_close", "code": code, "reason": payload[2:].decode()}
    decoded: dict[str, Any] = json.loads(payload)
    return decoded


class PollClient(Requests):
    """One fallback session: messages go out as POSTs, records come in by polls or a stream.

    ``ack`` counts the records received (pings aside), as the protocol asks;
    the close record arrives as ``{"type": "_close", "code", "reason"}``.
    """

    def __init__(self, base: str, http: aiohttp.ClientSession, stream: bool) -> None:
        self.base = base
        self.http = http
        self.stream = stream
        self.session = ""
        self.key = ""
        self.welcome: dict[str, Any] = {}
        self.ack = 0
        self.seq = 0
        self.closed: tuple[int, str] | None = None
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._receiving: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        stream: bool = False,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        welcome: bool = True,
    ) -> PollClient:
        """Open a session at the event endpoint ``url`` (``http://host:port/ws``)."""
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        client = cls(url, http, stream)
        try:
            response = await http.post(f"{url}/open", data=body, headers=headers or {})
            assert response.status == 200, (response.status, await response.text())
            opened = await response.json()
            client.session, client.key = opened["session"], opened["key"]
            client.seq = len(records(body))
            client._receiving = asyncio.get_running_loop().create_task(client._receive())
            if welcome:
                client.welcome = await client.recv()
                assert client.welcome["type"] == "welcome", client.welcome
        except BaseException:
            await client.close()
            raise
        return client

    @property
    def id(self) -> str:
        return str(self.welcome["peer"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Wirehub-Key": self.key}

    def params(self, **more: Any) -> dict[str, str]:
        return {"session": self.session, **{k: str(v) for k, v in more.items()}}

    # -- sending ----------------------------------------------------------------------

    async def post(self, body: bytes, seq: int | None = None) -> int:
        """POST ``body`` (records) numbered from ``seq`` (the next one by default); its status."""
        async with self._send_lock:
            first = self.seq if seq is None else seq
            response = await self.http.post(
                f"{self.base}/send",
                params=self.params(seq=first),
                data=io.BytesIO(body),
                headers=self.headers,
            )
            await response.read()
            if response.status == 204:
                self.seq = max(self.seq, first + len(records(body)))
            return response.status

    async def send(self, message: dict[str, Any]) -> None:
        status = await self.post(text(message))
        assert status == 204, status

    async def send_binary(self, header: dict[str, Any], payload: bytes) -> None:
        head = json.dumps(header).encode()
        status = await self.post(record(BINARY, struct.pack("!I", len(head)) + head + payload))
        assert status == 204, status

    # -- receiving --------------------------------------------------------------------

    async def poll(self, ack: int, *, stream: bool = False) -> aiohttp.ClientResponse:
        """One receive request, as is (the caller reads it)."""
        return await self.http.get(
            f"{self.base}/poll",
            params=self.params(ack=ack, **({"stream": 1} if stream else {})),
            headers=self.headers,
        )

    async def recv(self, timeout: float = UNIT) -> dict[str, Any]:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def _receive(self) -> None:
        """Poll (or stream) until the close record, acknowledging what arrived."""
        while self.closed is None:
            async with await self.poll(self.ack, stream=self.stream) as response:
                if response.status == 204:
                    continue
                if response.status != 200:
                    self._closed(1006, f"HTTP {response.status}")
                    return
                if not self.stream:
                    self._take(await response.read())
                    continue
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    whole = _whole(buffer)
                    self._take(buffer[:whole])
                    buffer = buffer[whole:]
                assert buffer == b"", "a stream ended inside a record"

    def _take(self, body: bytes) -> None:
        for opcode, payload in records(body):
            if opcode == PING:
                continue
            self.ack += 1
            message = decode(opcode, payload)
            self.messages.put_nowait(message)
            if opcode == CLOSE:
                self.closed = (message["code"], message["reason"])

    def _closed(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.messages.put_nowait({"type": "_close", "code": code, "reason": reason})

    async def wait_closed(self, timeout: float = UNIT) -> tuple[int, str]:
        """Skip messages until the session's close; return ``(code, reason)``."""
        while True:
            message = await self.recv(timeout)
            if message["type"] == "_close":
                return message["code"], message["reason"]

    async def close(self, code: int | None = 1000) -> None:
        """Send the close record (unless ``code`` is None), stop receiving, release HTTP."""
        if code is not None and self.closed is None and self.session:
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                await self.post(record(CLOSE, struct.pack("!H", code)))
        if self._receiving is not None:
            self._receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await self._receiving
        await self.http.close()

    async def __aenter__(self) -> PollClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _whole(buffer: bytes) -> int:
    """How many leading bytes of ``buffer`` are whole records."""
    at = 0
    while len(buffer) - at >= 2:
        length, head = buffer[at + 1] & 0x7F, 2
        if length == 126:
            if len(buffer) - at < 4:
                break
            (length,) = struct.unpack_from("!H", buffer, at + 2)
            head = 4
        elif length == 127:
            if len(buffer) - at < 10:
                break
            (length,) = struct.unpack_from("!Q", buffer, at + 2)
            head = 10
        if len(buffer) - at < head + length:
            break
        at += head + length
    return at
