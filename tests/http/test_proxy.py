"""Trusted proxies: ``X-Forwarded-For`` counts only from them, read from the nearest hop."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import http, serve
from tests.hub.wire import WireClient
from wirehub import ConfigError, Hub, Peer, Request, Response
from wirehub.http.messages import Headers
from wirehub.http.proxy import TrustedProxies, parse_ip


def request(client: tuple[str, int] | None, *forwarded: str, proxies: list[str] | None) -> Request:
    headers = Headers()
    for value in forwarded:
        headers["X-Forwarded-For"] = value
    return Request(
        "GET",
        "/",
        "",
        headers,
        client=client,
        trusted_proxies=TrustedProxies(proxies) if proxies is not None else None,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1 ", "192.0.2.1"),
        ("192.0.2.1:8080", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:DB8:0::1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("unknown", None),
        ("", None),
        ("192.0.2.256", None),
    ],
)
def test_parse_ip(text: str, expected: str | None) -> None:
    """Addresses are parsed with or without a port and normalized; anything else is None."""
    address = parse_ip(text)
    assert (str(address) if address is not None else None) == expected


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # The peer is not a proxy of ours: its header is ignored.
        ("198.51.100.7", ["203.0.113.9"], "198.51.100.7"),
        # Our proxy appended the client.
        ("127.0.0.1", ["203.0.113.9"], "203.0.113.9"),
        # A spoofed entry left of what our proxy appended is ignored.
        ("127.0.0.1", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
        # Two of our proxies in a row, in two header lines.
        ("127.0.0.1", ["203.0.113.9, 10.1.2.3", "10.0.0.1"], "203.0.113.9"),
        # Only our proxies: the farthest one is the client.
        ("127.0.0.1", ["10.0.0.2, 10.0.0.1"], "10.0.0.2"),
        # Garbage where the client should be: stop at the last hop we trust.
        ("127.0.0.1", ["203.0.113.9, garbage, 10.0.0.1"], "10.0.0.1"),
        # No header from a trusted proxy: the proxy itself.
        ("127.0.0.1", [], "127.0.0.1"),
        ("::ffff:127.0.0.1", ["2001:db8::5"], "2001:db8::5"),
    ],
)
def test_client_ip_behind_trusted_proxies(peer: str, forwarded: list[str], expected: str) -> None:
    """The client is the nearest address in ``X-Forwarded-For`` that is not a trusted proxy."""
    r = request((peer, 1234), *forwarded, proxies=["127.0.0.1", "10.0.0.0/8"])
    assert r.client_ip == expected


def test_client_ip_without_trusted_proxies_is_the_socket_peer() -> None:
    """Without trusted proxies the header never counts; no socket peer means None."""
    assert request(("192.0.2.1", 1), "203.0.113.9", proxies=None).client_ip == "192.0.2.1"
    assert request(("::ffff:192.0.2.1", 1), proxies=None).client_ip == "192.0.2.1"
    assert request(None, "203.0.113.9", proxies=None).client_ip is None
    assert request(None, "203.0.113.9", proxies=["127.0.0.1"]).client_ip is None


def test_bad_proxy_configuration_is_refused() -> None:
    """A trusted proxy that is not an address or a network raises ConfigError."""
    with pytest.raises(ConfigError, match=r"nginx\.local"):
        TrustedProxies(["127.0.0.1", "nginx.local"])
    assert [str(n) for n in TrustedProxies("10.0.0.0/8").networks] == ["10.0.0.0/8"]


def ip_hub(**kwargs: Any) -> Hub:
    """A hub answering ``client_ip`` on ``GET /ip`` and to the ``ip`` event."""
    hub = Hub(**kwargs)

    @hub.route("/ip")
    def ip(request: Request) -> Response:
        return Response.text(str(request.client_ip))

    @hub.on("ip")
    def peer_ip(peer: Peer) -> str | None:
        return peer.request.client_ip

    return hub


async def test_hub_trusted_proxies_reach_http_and_websocket_requests() -> None:
    """``Hub(trusted_proxies=...)`` makes ``client_ip`` honour the header on routes and peers."""
    asked = b"GET /ip HTTP/1.1\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n"
    async with serve(ip_hub(trusted_proxies=["127.0.0.1"])) as s:
        assert (await http(s.port, asked)).body == b"203.0.113.9"
        headers = {"X-Forwarded-For": "203.0.113.10"}
        async with await WireClient.open(s.ws("/ws"), additional_headers=headers) as client:
            assert (await client.call("ip"))["data"] == "203.0.113.10"
    async with serve(ip_hub()) as s:
        assert (await http(s.port, asked)).body == b"127.0.0.1"
