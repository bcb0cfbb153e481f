"""wss:// end to end: TLS (trustme certificates) on the event endpoint with a JWT."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from tests.conftest import serve
from tests.hub.wire import WireClient
from tests.security.keys import SECRET, token
from wirehub import Client, Hub, Peer
from wirehub.exceptions import HandshakeError
from wirehub.security import rooms_claim
from wirehub.security.jwt import JWTAuth


def jwt_hub() -> Hub:
    hub = Hub()
    hub.authenticate(JWTAuth(SECRET, audience="chat"))
    hub.authorize_join(rooms_claim())

    @hub.on("whoami")
    def whoami(peer: Peer) -> Any:
        return {"sub": peer.user["sub"], "scheme": peer.request.scheme}

    return hub


async def test_wss_with_a_jwt(server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext) -> None:
    """Over TLS, a JWT in the header authenticates, claims authorize joins, and the request
    is known to be https; the Python client's get_token works the same way."""
    claims = {"aud": "chat", "rooms": ["chat:*"]}
    async with serve(jwt_hub(), ssl=server_ssl) as served:
        url = served.ws("/ws")
        assert url.startswith("wss://")
        headers = {"Authorization": f"Bearer {token(claims)}"}
        async with await WireClient.open(url, ssl=client_ssl, additional_headers=headers) as c:
            assert (await c.call("whoami"))["data"] == {"sub": "ada", "scheme": "https"}
            await c.join("chat:lobby")
            assert (await c.request({"type": "join", "room": "admin"}))["code"] == "forbidden"
        async with Client(url, get_token=lambda: token(claims), ssl=client_ssl) as client:
            assert (await client.call("whoami"))["sub"] == "ada"
            await client.join("chat:tls")


async def test_wss_refuses_bad_tokens_and_untrusted_certificates(
    server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    """A wrong audience is a 401 over TLS too; a client that does not trust the CA fails."""
    async with serve(jwt_hub(), ssl=server_ssl) as served:
        url = served.ws("/ws")
        with pytest.raises(HandshakeError) as info:
            await Client(url, token=token({"aud": "billing"}), ssl=client_ssl, reconnect=False)
        assert info.value.status == 401
        with pytest.raises(HandshakeError):
            await Client(url, token=token({"aud": "chat"}), ssl=ssl.create_default_context())
