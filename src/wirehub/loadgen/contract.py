"""Before measuring a server: does it speak the bench contract? If not, say what is missing.

The contract (``wirehub bench --help`` states it for users): with the ``ws``
dialect, ``/echo`` sends every message back and ``/fanout?role=sub&room=R``
subscribers get what ``/fanout?role=pub&room=R`` publishers send; with
``wh``, the same through a wirehub event hub's ``/ws?ep=...``, event ``m``;
with ``sio``, a Socket.IO server at ``/socket.io/``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

__all__ = ["ContractError", "check_contract"]

PROBE = "wirehub-bench-probe"
TIMEOUT = 3.0  # seconds for the whole check


class ContractError(Exception):
    """What the target does not do, in words for a one-line error."""


async def check_contract(host: str, port: int, dialect: str, fanout: bool) -> None:
    """Raise ``ContractError`` unless ``host:port`` answers like a bench target."""
    base = f"ws://{host}:{port}"
    if dialect == "sio":
        await _socketio(base)
    elif dialect == "wh":
        await _wirehub_echo(base)
        if fanout:
            await _fanout(base, "/ws?ep=fanout&role={role}&room=probe", _wh_event)
    else:
        await _echo(base)
        if fanout:
            await _fanout(base, "/fanout?role={role}&room=probe", _plain)


async def _recv(ws: ClientConnection, what: str) -> str | bytes:
    try:
        async with asyncio.timeout(TIMEOUT):
            return await ws.recv()
    except TimeoutError:
        raise ContractError(f"{what}: nothing came within {TIMEOUT:g} s") from None


@asynccontextmanager
async def _open(base: str, path: str) -> AsyncIterator[ClientConnection]:
    try:
        async with websockets.connect(base + path, open_timeout=TIMEOUT) as ws:
            yield ws
    except websockets.InvalidStatus as exc:
        status = exc.response.status_code
        raise ContractError(f"GET {path} answered HTTP {status}") from None
    except ConnectionRefusedError:
        raise ContractError("nothing accepts connections there") from None
    except (OSError, websockets.InvalidHandshake) as exc:
        raise ContractError(f"GET {path}: {exc}") from None
    except websockets.ConnectionClosed as exc:
        raise ContractError(f"{path} closed the connection ({exc.code} {exc.reason})") from None


async def _echo(base: str) -> None:
    async with _open(base, "/echo") as ws:
        await ws.send(PROBE)
        reply = await _recv(ws, "/echo did not send the message back")
        if reply != PROBE:
            raise ContractError(f"/echo answered {str(reply)[:40]!r} instead of the message")


async def _wirehub_echo(base: str) -> None:
    async with _open(base, "/ws?ep=echo") as ws:
        await _welcome(ws)
        await ws.send(json.dumps({"type": "emit", "event": "m", "data": PROBE, "id": 1}))
        reply = _json(await _recv(ws, "event 'm' was not acknowledged"))
        if reply.get("type") == "error":
            raise ContractError(
                f"event 'm' got error {reply.get('code')!r}: {reply.get('message')}"
            )
        if reply.get("type") != "ack" or reply.get("data") != PROBE:
            raise ContractError(
                "event 'm' from an ?ep=echo peer was not acknowledged with its data"
            )


async def _welcome(ws: ClientConnection) -> None:
    if _json(await _recv(ws, "/ws sent no welcome")).get("type") != "welcome":
        raise ContractError("/ws sent no welcome: it is not a wirehub event endpoint")


async def _socketio(base: str) -> None:
    async with _open(base, "/socket.io/?EIO=4&transport=websocket&ep=echo") as ws:
        first = await _recv(ws, "/socket.io/ did not open a session")
        if not (isinstance(first, str) and first.startswith("0{")):
            raise ContractError("/socket.io/ did not open an Engine.IO session")


def _plain(message: str | bytes) -> bool:
    return message == PROBE


def _wh_event(message: str | bytes) -> bool:
    decoded = _json(message)
    return decoded.get("type") == "event" and decoded.get("data") == PROBE


async def _fanout(base: str, path: str, delivered: Any) -> None:
    """A subscriber gets what a publisher sends (published again until it does)."""
    async with (
        _open(base, path.format(role="sub")) as sub,
        _open(base, path.format(role="pub")) as pub,
    ):
        if "/ws?" in path:
            await _welcome(sub)
            await _welcome(pub)
        publish = (
            json.dumps({"type": "emit", "event": "m", "data": PROBE}) if "/ws?" in path else PROBE
        )
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            await pub.send(publish)  # again: the subscriber may not have been registered yet
            try:
                async with asyncio.timeout(TIMEOUT / 10):
                    while not delivered(await sub.recv()):
                        pass
                    return
            except TimeoutError:
                continue
        raise ContractError("a subscriber got nothing of what a publisher sent to its room")


def _json(message: str | bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(message)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}
