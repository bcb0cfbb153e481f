"""wirehub mounted in a FastAPI app: events at /rt/ws, the browser client at /rt/wirehub.js.

uvicorn examples.frameworks.fastapi_app:app --port 8000     # open http://127.0.0.1:8000

``POST /news`` is an ordinary FastAPI route that emits to the room every
client of the page joined; the page shows what arrives.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from wirehub import Hub, Peer, Request

hub = Hub()


@hub.on("connect")
async def connect(peer: Peer, request: Request) -> None:
    await peer.join("news")


@hub.on("hello")
def hello(peer: Peer, data: Any) -> str:
    return f"hello, {data}"


# The hub's startup and shutdown run in FastAPI's lifespan: a mounted app's own never does.
app = FastAPI(lifespan=hub.lifespan)
app.mount("/rt", hub)


@app.post("/news")
async def post_news(item: dict[str, Any]) -> dict[str, Any]:
    position = await hub.to("news").emit("news", item)
    return {"delivered_at": None if position is None else position.offset}


PAGE = """<!doctype html>
<meta charset="utf-8"><title>FastAPI + wirehub</title><link rel="icon" href="data:,">
<h1>News</h1><p id="status">connecting…</p><ul id="news"></ul>
<script type="module">
  import { connect } from "/rt/wirehub.js";
  const hub = connect("/rt/ws");
  window.hub = hub;
  hub.on("connect", () => { document.getElementById("status").textContent = "connected"; });
  hub.on("news", (item) => {
    const li = document.createElement("li");
    li.textContent = item.title;
    document.getElementById("news").append(li);
  });
</script>
"""


@app.get("/", response_class=HTMLResponse)
def page() -> str:
    return PAGE
