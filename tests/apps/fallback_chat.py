"""The app the fallback's browser scenarios serve with ``wirehub serve --workers 2 --redis``.

A test page (``/``) that loads wirehub.js, and a lobby to chat in: ``say``
sends ``said`` to every member, the sender included.
"""

from __future__ import annotations

from typing import Any

from wirehub import Hub, Peer, Request, Response

PAGE = """<!doctype html>
<meta charset="utf-8"><title>wirehub fallback test page</title><link rel="icon" href="data:,">
<script type="module">
  import * as wirehub from "/wirehub.js";
  window.wirehub = wirehub;
</script>
"""

hub = Hub()


@hub.route("/")
def page(request: Request) -> Response:
    return Response.text(PAGE, content_type="text/html; charset=utf-8")


@hub.on("say")
async def say(peer: Peer, data: Any) -> bool:
    await hub.to("lobby").emit("said", data)
    return True
