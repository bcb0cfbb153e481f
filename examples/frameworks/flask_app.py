"""A Flask app pushing to wirehub's clients: its views emit through the hub's HTTP API or Redis.

wirehub serve examples/frameworks/flask_app.py:hub --port 8000        # the hub, one process
flask --app examples/frameworks/flask_app.py run --port 5000          # Flask, another

Flask is WSGI: it cannot hold WebSockets, so the hub runs beside it and a
view emits with ``POST /api/emit`` (this file's default: no new service,
the hub's ``api_key`` guards it) or, with ``WIREHUB_REDIS`` set, through the
Redis backplane with ``wirehub.Emitter`` (serve the hub with ``--redis``
then; no HTTP hop, and it reaches every worker and node).
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from wirehub import Emitter, Hub, Peer, Request

HUB_URL = os.environ.get("WIREHUB_URL", "http://127.0.0.1:8000")
API_KEY = os.environ.get("WIREHUB_API_KEY", "change me: a long random secret")
REDIS_URL = os.environ.get("WIREHUB_REDIS")  # e.g. redis://127.0.0.1:6379/0

hub = Hub(api_key=API_KEY)


@hub.on("connect")
async def connect(peer: Peer, request: Request) -> None:
    await peer.join("orders")


app = Flask(__name__)
emitter = Emitter(REDIS_URL) if REDIS_URL else None
# No proxy from the environment for a call to our own hub.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def emit(event: str, data: Any, room: str) -> int | None:
    """Emit to ``room`` on every node; return the event's offset in the room."""
    if emitter is not None:
        position = emitter.emit(event, data, room=room)
        return None if position is None else position.offset
    body = json.dumps({"event": event, "data": data, "room": room}).encode()
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    call = urllib.request.Request(f"{HUB_URL}/api/emit", body, headers)
    with opener.open(call, timeout=5) as response:
        offset: int | None = json.load(response).get("offset")
        return offset


@app.post("/orders")
def new_order() -> ResponseReturnValue:
    order = request.get_json()
    return jsonify(ok=True, offset=emit("order", order, room="orders"))
