"""Origin checks (CSWSH): unit rules, then forged origins against a real server."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import raw_connection, read_response, serve, upgrade_request
from tests.hub.wire import WireClient
from wirehub import Hub
from wirehub.security.origins import OriginPolicy, normalize_origin


@pytest.mark.parametrize(
    ("origin", "normal"),
    [
        ("HTTPS://Example.COM", "https://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("http://example.com:80/", "http://example.com"),
        ("http://example.com:8080", "http://example.com:8080"),
        ("https://[::1]:443", "https://[::1]"),
        ("null", "null"),
    ],
)
def test_normalize_origin(origin: str, normal: str) -> None:
    """Origins compare in lower case, without default ports or a trailing slash."""
    assert normalize_origin(origin) == normal


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("https://chat.example.com", "chat.example.com"),
        ("https://chat.example.com", "chat.example.com:443"),
        ("http://chat.example.com", "CHAT.example.com"),
        ("http://[::1]:8000", "[::1]:8000"),
    ],
)
def test_same_origin_is_allowed_by_default(origin: str, host: str) -> None:
    """A page of the server's own origin (host and port) may connect."""
    assert OriginPolicy().allows(origin, host)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://evil.example", "127.0.0.1:8000"),
        ("http://127.0.0.1:9000", "127.0.0.1:8000"),  # another port is another origin
        ("https://chat.example.com", "chat.example.com:8443"),
        ("https://chat.example.com.evil.example", "chat.example.com"),
        ("null", "127.0.0.1:8000"),  # sandboxed frames and file:// pages
        ("not a url", "127.0.0.1:8000"),
        ("http://127.0.0.1:8000", None),  # no Host: nothing to be the same as
        ("http://127.0.0.1:99999", "127.0.0.1:99999"),  # invalid port
    ],
)
def test_cross_origin_is_refused_by_default(origin: str, host: str | None) -> None:
    """Any other origin, including ``null`` and garbage, is refused."""
    assert not OriginPolicy().allows(origin, host)


def test_no_origin_is_allowed() -> None:
    """Non-browser clients send no Origin: the check cannot and does not apply."""
    assert OriginPolicy().allows(None, "127.0.0.1:8000")
    assert OriginPolicy().allows(None, None)


def test_allowed_exact_and_patterns() -> None:
    """Exact origins and fnmatch patterns; a pattern matches only well-formed origins."""
    policy = OriginPolicy(
        ["https://app.example.com", "https://*.example.org", "http://localhost:*", "null"]
    )
    host = "api.example.com"
    for origin in (
        "https://app.example.com",
        "https://APP.example.com:443",
        "https://a.example.org",
        "https://a.b.example.org",
        "http://localhost:5173",
        "null",
    ):
        assert policy.allows(origin, host), origin
    for origin in (
        "http://app.example.com",  # another scheme
        "https://example.org",  # the pattern wants a subdomain
        "https://evil.example/x.example.org",  # a path: not an origin
        "https://evil.example?.example.org",
        "https://user@a.example.org",
        "https://a.example.org.evil.example",
        "http://localhost.evil.example:80",
    ):
        assert not policy.allows(origin, host), origin


def test_star_allows_every_origin() -> None:
    """``["*"]`` turns the check off."""
    assert OriginPolicy(["*"]).allows("http://anything.example", "x")


async def handshake(port: int, path: str, origin: str | None, host: str | None = None) -> int:
    headers = "" if origin is None else f"Origin: {origin}\r\n"
    request = upgrade_request(path, headers)
    if host is not None:
        request = request.replace(b"Host: 127.0.0.1", f"Host: {host}".encode())
    async with raw_connection(port) as (reader, writer):
        writer.write(request)
        response = await read_response(reader, head_only=True)
        return response.status


def origin_hub(**kwargs: object) -> Hub:
    hub = Hub(**kwargs)  # type: ignore[arg-type]

    @hub.websocket("/echo")
    async def echo(ws: object) -> None:
        pass

    return hub


async def test_forged_origin_is_refused_before_the_upgrade() -> None:
    """A cross-site page (forged Origin) gets 403 on every endpoint; nothing runs."""
    hub = origin_hub()
    async with serve(hub) as served:
        for path in ("/ws", "/echo"):
            assert await handshake(served.port, path, "https://evil.example") == 403
            assert await handshake(served.port, path, "null") == 403
        same = f"http://127.0.0.1:{served.port}"
        assert await handshake(served.port, "/ws", same, f"127.0.0.1:{served.port}") == 101
        assert await handshake(served.port, "/ws", None) == 101
    assert hub.stats["refused_origin"] == 4
    assert not hub.peers


async def test_allowed_origins_let_listed_sites_in() -> None:
    """``Hub(allowed_origins=...)`` admits the listed origins and patterns, still not others."""
    hub = origin_hub(allowed_origins=["https://app.example.com", "http://localhost:*"])
    async with serve(hub) as served:
        assert await handshake(served.port, "/ws", "https://app.example.com") == 101
        assert await handshake(served.port, "/ws", "http://localhost:5173") == 101
        assert await handshake(served.port, "/ws", "https://evil.example") == 403


async def test_a_forged_origin_never_reaches_the_connect_handler() -> None:
    """The refusal is an HTTP 403 before any application code; a plain client still works."""
    hub = Hub()
    seen: list[str] = []

    @hub.on("connect")
    def connect(peer: object, request: object) -> None:
        seen.append("connect")

    async with serve(hub) as served:
        assert await handshake(served.port, "/ws", "https://evil.example") == 403
        async with await WireClient.open(served.ws("/ws")) as client:
            assert client.welcome["type"] == "welcome"
    assert seen == ["connect"]


async def test_origin_refusal_is_logged_at_info_with_what_was_seen(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused Origin is logged at INFO with the Origin and Host seen and the proxy hint:
    behind a proxy that drops the port from Host, this line is the diagnosis."""
    async with serve(origin_hub()) as served:
        with caplog.at_level(logging.INFO, logger="wirehub.security"):
            status = await handshake(
                served.port, "/echo", "http://chat.example:8080", "chat.example"
            )
    assert status == 403
    [line] = [r.getMessage() for r in caplog.records if "refused (403)" in r.getMessage()]
    assert "Origin http://chat.example:8080" in line and "Host 'chat.example'" in line
    assert "proxy_set_header Host $http_host" in line
