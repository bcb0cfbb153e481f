"""Static files: content types, ETag and 304, index.html, HEAD, and no way out of the root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import http, raw_connection, read_response, serve
from wirehub import ConfigError, Hub, Response
from wirehub.http.static import StaticFiles


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """``public/`` with a few files, next to a ``secret.txt`` that must never be served."""
    (tmp_path / "secret.txt").write_text("top secret")
    public = tmp_path / "public"
    (public / "sub").mkdir(parents=True)
    (public / "index.html").write_text("<h1>home</h1>")
    (public / "app.js").write_text("console.log('hi')")
    (public / "style.css").write_text("body{}")
    (public / "data.unknownext").write_bytes(b"\x00\x01")
    (public / "sub" / "index.html").write_text("<h1>sub</h1>")
    (public / "link").symlink_to(tmp_path / "secret.txt")
    return public


def get(path: str, *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: t", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def test_index_html_for_root(site: Path) -> None:
    """``/`` serves index.html as text/html with an ETag."""
    hub = Hub()
    hub.mount("/", site)
    async with serve(hub) as s:
        response = await http(s.port, get("/"))
    assert (response.status, response.body) == (200, b"<h1>home</h1>")
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["etag"].startswith('"')


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/app.js", "javascript; charset=utf-8", b"console.log('hi')"),
        ("/style.css", "text/css; charset=utf-8", b"body{}"),
        ("/data.unknownext", "application/octet-stream", b"\x00\x01"),
        ("/sub/", "text/html; charset=utf-8", b"<h1>sub</h1>"),
        ("/sub/", "text/html; charset=utf-8", b"<h1>sub</h1>"),
    ],
)
async def test_content_types(site: Path, path: str, content_type: str, body: bytes) -> None:
    """Each file gets a content type from its name; folders serve their index.html."""
    hub = Hub()
    hub.mount("/", site)
    async with serve(hub) as s:
        response = await http(s.port, get(path))
    assert response.status == 200
    assert response.headers["content-type"].endswith(content_type)
    assert response.body == body


async def test_etag_then_if_none_match_is_304(site: Path) -> None:
    """A request carrying the file's ETag gets 304 with no body; a changed file gets 200."""
    hub = Hub()
    hub.mount("/", site)
    async with serve(hub) as s, raw_connection(s.port) as (reader, writer):
        writer.write(get("/app.js"))
        etag = (await read_response(reader)).headers["etag"]
        writer.write(get("/app.js", f"If-None-Match: {etag}"))
        cached = await read_response(reader)
        assert cached.status == 304
        assert cached.body == b""
        assert cached.headers["etag"] == etag
        (site / "app.js").write_text("console.log('changed')")
        os.utime(site / "app.js", ns=(0, 10**18))
        writer.write(get("/app.js", f"If-None-Match: {etag}"))
        fresh = await read_response(reader)
        assert (fresh.status, fresh.body) == (200, b"console.log('changed')")
        assert fresh.headers["etag"] != etag


async def test_head_has_length_but_no_body(site: Path) -> None:
    """HEAD on a file sends its headers and Content-Length, and no body."""
    hub = Hub()
    hub.mount("/", site)
    async with serve(hub) as s, raw_connection(s.port) as (reader, writer):
        writer.write(get("/index.html", method="HEAD") + get("/style.css"))
        head = await read_response(reader, head_only=True)
        assert head.status == 200
        assert head.headers["content-length"] == str(len("<h1>home</h1>"))
        # The next response starts right after the head: no body was sent.
        assert (await read_response(reader)).body == b"body{}"


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/../../etc/passwd",
        "/%2e%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub/..%2f..%2fsecret.txt",
        "/sub/%2E%2E/%2E%2E/secret.txt",
        "/..%5csecret.txt",
        "/index.html%00.js",
        "/link",  # a symlink inside the root pointing outside it
        "/missing.txt",
    ],
)
async def test_no_way_out_of_the_root(site: Path, path: str) -> None:
    """Traversal attempts, encoded or not, and links leading outside the root get 404."""
    hub = Hub()
    hub.mount("/", site)
    async with serve(hub) as s:
        response = await http(s.port, get(path))
    assert response.status == 404
    assert b"secret" not in response.body


async def test_prefix_mount(site: Path) -> None:
    """A mount under /assets serves its files there and nowhere else."""
    hub = Hub()
    hub.mount("/assets", site)
    async with serve(hub) as s:
        assert (await http(s.port, get("/assets/style.css"))).body == b"body{}"
        assert (await http(s.port, get("/assets"))).headers["location"] == "/assets/"
        assert (await http(s.port, get("/assets/"))).body == b"<h1>home</h1>"
        assert (await http(s.port, get("/style.css"))).status == 404
        assert (await http(s.port, get("/assetsstyle.css"))).status == 404


async def test_longest_prefix_wins(site: Path, tmp_path: Path) -> None:
    """With mounts at / and /sub, /sub/... is served from the /sub mount."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "index.html").write_text("other")
    hub = Hub()
    hub.mount("/", site)
    hub.mount("/sub", other)
    async with serve(hub) as s:
        assert (await http(s.port, get("/sub/"))).body == b"other"
        assert (await http(s.port, get("/"))).body == b"<h1>home</h1>"


async def test_post_to_a_file_is_405(site: Path) -> None:
    """Static files answer GET and HEAD only; other methods get 405 with Allow."""
    hub = Hub()
    hub.mount("/", site)
    async with serve(hub) as s:
        response = await http(s.port, get("/app.js", "Content-Length: 0", method="POST"))
    assert response.status == 405
    assert response.headers["allow"] == "GET, HEAD"


async def test_routes_win_over_static_files(site: Path) -> None:
    """An HTTP route answers its path even when a file of that name exists."""
    hub = Hub()
    hub.mount("/", site)
    hub.add_route("/app.js", lambda request: Response.text("route"))
    async with serve(hub) as s:
        assert (await http(s.port, get("/app.js"))).body == b"route"


def test_mount_of_missing_folder_fails_early(tmp_path: Path) -> None:
    """Mounting a folder that does not exist raises at once, naming it."""
    with pytest.raises(ConfigError, match="nope"):
        StaticFiles("/", tmp_path / "nope")


@pytest.mark.parametrize("path", ["/../secret.txt", "/%2e%2e/secret.txt", "/a/../../secret.txt"])
def test_resolve_refuses_paths_outside(site: Path, path: str) -> None:
    """StaticFiles.resolve never returns a file outside its root."""
    assert StaticFiles("/", site).resolve(path) is None
    assert StaticFiles("/", site).resolve("/sub/../app.js") == site / "app.js"


async def test_folder_without_slash_redirects(tmp_path: Path) -> None:
    """A folder URL without its trailing slash redirects (301) so relative links work."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_text("<p>docs</p>")
    hub = Hub()
    hub.mount("/", tmp_path)
    async with serve(hub) as s:
        response = await http(s.port, b"GET /docs?x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert response.status == 301
        assert response.headers["location"] == "/docs/?x=1"
