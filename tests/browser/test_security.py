"""wirehub.js against a hub with JWTAuth and the origin check, in Chromium."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import Page

from tests.browser.conftest import BROWSER, Pages, Site
from tests.security.keys import SECRET
from wirehub import Hub, Peer, Request, Response
from wirehub.security.jwt import JWTAuth

PAGE = """<!doctype html>
<meta charset="utf-8"><title>security test page</title><link rel="icon" href="data:,">
<script type="module">
  import * as wirehub from "/wirehub.js";
  window.wirehub = wirehub;
</script>
"""

pytestmark = BROWSER

ServeHub = Callable[[Hub], Awaitable[Site]]


def jwt_hub(**kwargs: Any) -> Hub:
    """A hub whose ``/token`` hands out 3-second tokens, refreshed 2 s before they expire."""
    hub = Hub(**kwargs)
    auth = JWTAuth(SECRET, refresh_before=2.0)
    hub.authenticate(auth)
    issued: list[str] = []
    hub.state = issued  # type: ignore[attr-defined]

    @hub.route("/")
    def page(request: Request) -> Response:
        return Response(200, PAGE.encode(), "text/html; charset=utf-8")

    @hub.route("/token")
    def token(request: Request) -> Response:
        issued.append(auth.issue({"sub": "ada", "name": "Ada"}, ttl=3))
        return Response.text(issued[-1])

    @hub.on("whoami")
    def whoami(peer: Peer) -> Any:
        return {"name": peer.user["name"], "exp": peer.user["exp"]}

    return hub


async def open_page(pages: Pages, url: str) -> Page:
    page = await pages.open(url)
    await page.wait_for_function("window.wirehub !== undefined")
    return page


async def test_token_in_first_message_is_refreshed_in_place(
    pages: Pages, serve_hub: ServeHub
) -> None:
    """By default the token goes in the first message, never in the URL (proxies log URLs);
    the server's ``refresh`` is answered without reconnecting, and the connection outlives
    its first token."""
    site = await serve_hub(jwt_hub())
    page = await open_page(pages, site.url + "/")
    result = await page.evaluate(
        """async () => {
          const token = () => fetch("/token").then((r) => r.text());
          const hub = wirehub.connect("/ws", { token });
          const first = await hub.call("whoami");
          const peer = hub.id;
          await new Promise((resolve) => setTimeout(resolve, 4000));
          const later = await hub.call("whoami");
          return { first, later, same: hub.id === peer, url: hub._ws.url };
        }"""
    )
    assert result["first"]["name"] == "Ada" and result["same"]
    assert result["later"]["exp"] > result["first"]["exp"]  # a refreshed token's claims
    assert "token=" not in result["url"]
    assert len(site.hub.state) >= 2  # type: ignore[attr-defined]


async def test_bad_token_is_final(pages: Pages, serve_hub: ServeHub) -> None:
    """A refused token in the first message is a 4001 the page sees, and it does not retry."""
    site = await serve_hub(jwt_hub())
    page = await open_page(pages, site.url + "/")
    result = await page.evaluate(
        """async () => {
          const hub = wirehub.connect("/ws", { token: "not-a-jwt", tokenIn: "message" });
          return await new Promise((resolve) => hub.on("disconnect", resolve));
        }"""
    )
    assert result == {"code": 4001, "reason": "invalid token", "reconnect": False}
    assert site.hub.stats["refused_auth"] == 1


async def test_cross_origin_page_is_refused_unless_allowed(
    pages: Pages, serve_hub: ServeHub
) -> None:
    """A page of another origin cannot open the hub's WebSocket (403 at the handshake),
    unless the hub lists that origin in ``allowed_origins``."""
    pages.allow("WebSocket connection to .* failed")
    home = await serve_hub(jwt_hub())
    other = await serve_hub(Hub())
    allowing = await serve_hub(Hub(allowed_origins=[home.url]))
    page = await open_page(pages, home.url + "/")
    script = """async (url) => {
      const hub = wirehub.connect(url, { reconnect: false });
      return await new Promise((resolve) => {
        hub.on("connect", () => resolve("connected"));
        hub.on("disconnect", ({ code }) => resolve(code));
      });
    }"""
    assert await page.evaluate(script, f"ws://127.0.0.1:{other.port}/ws") == 1006
    assert other.hub.stats["refused_origin"] == 1
    assert await page.evaluate(script, f"ws://127.0.0.1:{allowing.port}/ws") == "connected"


async def test_a_page_learns_of_the_4008_it_could_not_read(
    pages: Pages, serve_hub: ServeHub
) -> None:
    """A page cut as a slow consumer too stalled to read the close frame sees 1006; its
    reconnection names the lost peer, and the ``reconnect`` event says 4008."""
    site = await serve_hub(jwt_hub())
    page = await open_page(pages, site.url + "/")
    await page.evaluate(
        """async () => {
          window.hub = wirehub.connect("/ws", { token: () => fetch("/token").then((r) => r.text()),
                                                reconnect: { initialDelay: 20, jitter: 0 } });
          await window.hub.ready();
          window.reconnected = new Promise((resolve) => window.hub.on("reconnect", resolve));
        }"""
    )
    lost = await page.evaluate("window.hub.id")
    site.hub.node.fanout._remember(lost, 4008, "slow consumer: not reading fast enough")
    assert site.server is not None
    for connection in list(site.server.connections):
        if connection.session is site.hub.peers.get(lost):
            connection._abort()
    result = await page.evaluate("window.reconnected.then((info) => info.closed)")
    assert result == {"code": 4008, "reason": "slow consumer: not reading fast enough"}
