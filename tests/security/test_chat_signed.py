"""The chat demo's signed-token mode: a cookie from /login, checked before the upgrade."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from tests.conftest import http, serve
from tests.hub.wire import WireClient
from tests.security.conftest import handshake_status
from tests.security.keys import SECRET

APP = Path(__file__).resolve().parents[2] / "examples" / "chat" / "app.py"


def load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chat_demo_signed", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_login_cookie_is_required_and_names_the_user() -> None:
    """Without the cookie: 401. With it: connected under the token's name, which ``nick``
    cannot change; the name is escaped in the login page's script."""
    app = load_app()
    async with serve(app.create_hub(SECRET)) as served:
        form = await http(served.port, b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
        assert form.status == 200 and b'<form action="/login">' in form.body
        login = await http(served.port, b"GET /login?name=ada HTTP/1.1\r\nHost: x\r\n\r\n")
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        token = re.match(r"wirehub_chat=([^;]+);", cookie).group(1)  # type: ignore[union-attr]
        assert (await handshake_status(served.port, "/ws?name=mallory"))[0] == 401
        headers = {"Cookie": f"wirehub_chat={token}"}
        url = served.ws("/ws?name=mallory")
        async with await WireClient.open(url, additional_headers=headers) as client:
            assert (await client.call("nick", "mallory"))["data"] == {"name": "ada"}
        evil = await http(
            served.port, b"GET /login?name=%3C/script%3E%3Cb%3E HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert b"</script><b>" not in evil.body and b"\\u003c/script>" in evil.body


async def test_without_a_secret_the_demo_is_open() -> None:
    """The default demo needs no login; /login does not exist."""
    app = load_app()
    async with serve(app.create_hub()) as served:
        async with await WireClient.open(served.ws("/ws?name=bob")) as client:
            assert (await client.call("nick", "rob"))["data"] == {"name": "rob"}
        response = await http(served.port, b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
        assert response.status == 404
