"""HTTP request and response objects."""

from __future__ import annotations

import json

import pytest

from wirehub import Request, Response
from wirehub.http.messages import Headers


def request(**kwargs: object) -> Request:
    fields: dict[str, object] = {
        "method": "GET",
        "path": "/",
        "query_string": "",
        "headers": Headers(),
    }
    fields.update(kwargs)
    return Request(**fields)  # type: ignore[arg-type]


def split(raw: bytes) -> tuple[list[str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.decode("latin-1").split("\r\n"), body


def test_query_last_value_wins_and_blanks_kept() -> None:
    """Query parameters decode percent-escapes, keep blank values, and the last repeat wins."""
    r = request(query_string="a=1&b=&a=2&c=%C3%A9+x")
    assert r.query == {"a": "2", "b": "", "c": "é x"}


@pytest.mark.parametrize(
    ("upgrade", "expected"),
    [("websocket", True), ("WebSocket", True), ("h2c", False), (None, False)],
)
def test_is_websocket(upgrade: str | None, expected: bool) -> None:
    """A request is a WebSocket upgrade when its Upgrade header names websocket, in any case."""
    headers = Headers() if upgrade is None else Headers(Upgrade=upgrade)
    assert request(headers=headers).is_websocket is expected


def test_json_body() -> None:
    """``Request.json()`` decodes the body."""
    assert request(body=b'{"a": [1, 2]}').json() == {"a": [1, 2]}


def test_serialize_frames_the_body() -> None:
    """A response carries status line, Content-Length, Content-Type, extra headers and body."""
    raw = Response(201, b"hi", "text/x", [("X-A", "1")]).serialize(keep_alive=True)
    lines, body = split(raw)
    assert lines[0] == "HTTP/1.1 201 Created"
    assert "Content-Length: 2" in lines
    assert "Content-Type: text/x" in lines
    assert "X-A: 1" in lines
    assert "Server: wirehub" in lines
    assert not any(line.startswith("Connection:") for line in lines)
    assert body == b"hi"


def test_serialize_connection_close_and_head() -> None:
    """Without keep-alive the response says Connection: close; for HEAD the body is left out."""
    raw = Response(200, b"hello").serialize(keep_alive=False, head_only=True)
    lines, body = split(raw)
    assert "Connection: close" in lines
    assert "Content-Length: 5" in lines
    assert body == b""


def test_304_has_no_body_and_no_content_type() -> None:
    """A 304 response sends neither a body nor a Content-Type."""
    lines, body = split(
        Response(304, b"ignored", headers=[("ETag", '"x"')]).serialize(keep_alive=True)
    )
    assert lines[0] == "HTTP/1.1 304 Not Modified"
    assert not any(line.startswith("Content-Type") for line in lines)
    assert 'ETag: "x"' in lines
    assert body == b""


def test_error_and_json_helpers() -> None:
    """Response.error writes the status phrase and detail; Response.json compact JSON."""
    assert Response.error(404).body == b"404 Not Found\n"
    # The phrase for 413 changed in Python 3.13; the shape did not.
    assert Response.error(413, "too big").body.splitlines()[1] == b"too big"
    response = Response.json({"a": 1}, status=202)
    assert (response.status, response.content_type) == (202, "application/json")
    assert json.loads(response.body) == {"a": 1}
    assert response.body == b'{"a":1}'
