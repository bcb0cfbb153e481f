"""Helpers for the security tests: a token authenticator with exact expiry, raw handshakes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from websockets.exceptions import ConnectionClosed

from tests.conftest import UNIT, connect, raw_connection, read_response, upgrade_request
from tests.hub.wire import WireClient
from wirehub.codes import CloseCode
from wirehub.exceptions import Reject
from wirehub.security.auth import TokenAuth


class PlainTokens(TokenAuth):
    """Tokens ``"<subject>:<unix expiry>"`` (``"<subject>"``: never expires); ``bad`` is refused.

    Sub-second expiry (JWT ``exp`` is whole seconds), so refresh tests are fast.
    """

    def verify(self, token: str) -> dict[str, Any]:
        subject, _, expiry = token.partition(":")
        if not subject or subject == "bad":
            raise Reject(401, "invalid token", code=CloseCode.UNAUTHORIZED)
        identity: dict[str, Any] = {"sub": subject}
        if expiry:
            identity["exp"] = float(expiry)
            if identity["exp"] <= time.time():
                raise Reject(401, "token expired", code=CloseCode.TOKEN_EXPIRED)
        return identity

    def expires_at(self, identity: Any) -> float | None:
        exp = identity.get("exp")
        return float(exp) if exp is not None else None

    def same_subject(self, old: Any, new: Any) -> bool:
        return bool(old["sub"] == new["sub"])


def plain_token(subject: str = "ada", ttl: float | None = None) -> str:
    return subject if ttl is None else f"{subject}:{time.time() + ttl}"


async def handshake_status(
    port: int, path: str = "/ws", extra: str = ""
) -> tuple[int, dict[str, str]]:
    """Send one upgrade request by hand; return the response status and headers."""
    async with raw_connection(port) as (reader, writer):
        writer.write(upgrade_request(path, extra))
        response = await read_response(reader, head_only=True)
        return response.status, response.headers


async def open_with_auth(url: str, token: str, **kwargs: Any) -> WireClient:
    """Open a WebSocket without credentials, send ``auth`` first, read the welcome."""
    ws = await connect(url, **kwargs)
    await ws.send(json.dumps({"type": "auth", "token": token}))
    client = WireClient(ws)
    client.welcome = await client.recv()
    assert client.welcome["type"] == "welcome", client.welcome
    return client


async def closed_with(ws: Any, timeout: float = UNIT) -> tuple[int, str]:
    """Wait for the server to close ``ws`` (skipping messages); its close code and reason."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, repr(exc)
        return exc.rcvd.code, exc.rcvd.reason
