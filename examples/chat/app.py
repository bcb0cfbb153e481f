"""Multi-room web chat on the event layer, with its browser UI.

    make demo          (or: wirehub serve examples/chat/app.py:hub --port 8000)

then open http://127.0.0.1:8000 in two windows. The page (``static/``, built
on ``/wirehub.js`` only) connects to ``/ws?name=ada``. Events:

- ``say`` ``{room, text, cid?}``: everyone in the room, **the sender
  included**, receives a ``message`` event ``{room, from, text, ts, cid}``.
  Sending it to the sender too keeps one source of truth: the message gets its
  room position like everyone else's, so every client shows the same order,
  a reconnect recovers it and history replays it. ``cid`` is the sender's own
  id for the message, so its page can swap the "sending…" copy for the real one.
- ``typing`` ``{room}``: the other members of the room get ``typing``
  ``{room, from, peer}``, as a *volatile* room event: not numbered and not
  kept, so typing notices never push messages out of the room's history.
- ``nick`` ``name``: rename (taken into account at the next join).
- ``rooms``: the rooms with their member counts.

Signed-token mode: with ``WIREHUB_CHAT_SECRET`` set (32+ characters), only
browsers that went through ``/login`` may connect (see ``require_login``):

    WIREHUB_CHAT_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(32))') make demo

then open http://127.0.0.1:8000/login.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import msgspec

from wirehub import EventError, Hub, Peer, Request, Response

STATIC = Path(__file__).resolve().parent / "static"
MAX_TEXT = 2000


class Say(msgspec.Struct):
    room: str
    text: str
    cid: str | None = None


class Typing(msgspec.Struct):
    room: str


def nickname(value: str | None) -> str:
    """A display name: printable characters only, trimmed, at most 32, ``anonymous`` when empty."""
    name = "".join(c for c in value or "" if c.isprintable()).strip()[:32]
    return name or "anonymous"


COOKIE = "wirehub_chat"
TOKEN_TTL = 8 * 3600
LOGIN_FORM = """<!doctype html><meta charset="utf-8"><title>wirehub chat: log in</title>
<form action="/login"><label>Name <input name="name" maxlength="32" required autofocus></label>
<button>Enter the chat</button></form>"""
LOGGED_IN = """<!doctype html><meta charset="utf-8"><script>
localStorage.setItem("wirehub-chat:name", NAME); location.replace("/");</script>"""


def require_login(hub: Hub, secret: str) -> None:
    """Signed-token mode: only browsers holding a token from ``/login`` may connect.

    ``/login?name=ada`` signs a JWT (HS256 with ``secret``, 8 hours) and puts it
    in an HttpOnly, SameSite=Strict cookie, which the browser sends with the
    WebSocket handshake; the hub checks it before the upgrade (401 without one)
    and the name in it is the user's display name, which the page cannot
    change. A real application would check a password or its session here.
    """
    from wirehub.security.jwt import JWTAuth

    auth = JWTAuth(secret, query=None, cookie=COOKIE, allow_message=False)
    hub.authenticate(auth)

    @hub.route("/login")
    def login(request: Request) -> Response:
        if "name" not in request.query:
            return Response(200, LOGIN_FORM.encode(), "text/html; charset=utf-8")
        name = nickname(request.query["name"])
        token = auth.issue({"sub": name, "name": name}, ttl=TOKEN_TTL)
        secure = "; Secure" if request.scheme == "https" else ""
        page = LOGGED_IN.replace("NAME", json.dumps(name).replace("<", "\\u003c"))
        response = Response(200, page.encode(), "text/html; charset=utf-8")
        cookie = f"{COOKIE}={token}; Path=/; Max-Age={TOKEN_TTL}; HttpOnly; SameSite=Strict"
        response.headers.append(("Set-Cookie", cookie + secure))
        return response

    @hub.route("/me")
    def me(request: Request) -> Response:
        """Who the cookie says you are (200), or 401: the page then points to /login."""
        token = auth.token_from(request)
        try:
            claims = auth.verify(token) if token else None
        except Exception:
            claims = None
        if claims is None:
            return Response.error(401, "not logged in, or the login expired: see /login")
        return Response.json({"name": claims["name"]})


def create_hub(secret: str | None = None) -> Hub:
    """A new chat hub (the tests make one each, so rooms never leak between them).

    With ``secret``, in signed-token mode (``require_login``).
    """
    hub = Hub(presence=True)
    if secret:
        require_login(hub, secret)

    @hub.on("connect")
    async def connect(peer: Peer, request: Request) -> None:
        signed = peer.user["name"] if peer.user else None  # signed-token mode
        peer.info["name"] = nickname(signed or request.query.get("name"))

    @hub.on("nick")
    def nick(peer: Peer, name: str) -> dict[str, str]:
        if peer.user:  # signed-token mode: the token's name stays
            return {"name": peer.info["name"]}
        peer.info["name"] = nickname(name)
        return {"name": peer.info["name"]}

    @hub.on("say")
    async def say(peer: Peer, msg: Say) -> dict[str, float]:
        if msg.room not in peer.rooms:
            raise EventError("not_joined", f"join {msg.room!r} before speaking there")
        text = msg.text.strip()[:MAX_TEXT]
        if not text:
            raise EventError("empty", "say something")
        ts = time.time()
        message = {"room": msg.room, "from": peer.info["name"], "text": text, "ts": ts}
        if msg.cid is not None:
            message["cid"] = msg.cid[:64]
        await hub.to(msg.room).emit("message", message)
        return {"ts": ts}

    @hub.on("typing")
    async def typing(peer: Peer, msg: Typing) -> None:
        if msg.room not in peer.rooms:
            return
        notice = {"room": msg.room, "from": peer.info["name"], "peer": peer.id}
        await hub.to(msg.room).emit("typing", notice, exclude=peer, volatile=True)

    @hub.on("rooms")
    async def rooms(peer: Peer) -> dict[str, int]:
        """Rooms and members on every worker and node (``hub.rooms`` is this process's)."""
        return dict(sorted((await hub.room_sizes()).items()))

    hub.mount("/", STATIC)
    return hub


hub = create_hub(os.environ.get("WIREHUB_CHAT_SECRET"))  # examples may read the environment

if __name__ == "__main__":
    hub.run()
