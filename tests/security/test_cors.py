"""CORS on the native server: ``Hub(cors_origins=[...])`` for /wirehub.js, routes and the API."""

from __future__ import annotations

from tests.conftest import http, serve
from wirehub import Hub, Request, Response


def cors_hub(**kwargs: object) -> Hub:
    hub = Hub(**kwargs)  # type: ignore[arg-type]

    @hub.route("/data", methods=("GET", "PUT"))
    def data(request: Request) -> Response:
        return Response.json({"ok": True})

    return hub


def get(path: str, origin: str | None = None, method: str = "GET", extra: str = "") -> bytes:
    header = f"Origin: {origin}\r\n" if origin else ""
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}{extra}\r\n".encode()


async def test_allowed_origin_reads_script_and_routes() -> None:
    """An allowed origin gets Access-Control-Allow-Origin on /wirehub.js and on a route."""
    hub = cors_hub(cors_origins=["https://*.example.com"])
    async with serve(hub) as s:
        for path in ("/wirehub.js", "/data"):
            response = await http(s.port, get(path, "https://app.example.com"))
            assert response.status == 200
            assert response.headers["access-control-allow-origin"] == "https://app.example.com"
            assert response.headers["vary"] == "Origin"


async def test_other_origins_and_default_get_no_cors_headers() -> None:
    """An origin not listed gets no CORS headers; without cors_origins nobody does."""
    async with serve(cors_hub(cors_origins=["https://app.example.com"])) as s:
        response = await http(s.port, get("/wirehub.js", "https://evil.example"))
        assert response.status == 200 and "access-control-allow-origin" not in response.headers
    async with serve(cors_hub()) as s:
        response = await http(s.port, get("/wirehub.js", "https://app.example.com"))
        assert "access-control-allow-origin" not in response.headers
        assert "vary" not in response.headers


async def test_preflight_names_the_route_methods() -> None:
    """A preflight OPTIONS is answered 204 with the route's methods and the asked headers."""
    async with serve(cors_hub(cors_origins=["*"])) as s:
        asked = "Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: x-token\r\n"
        response = await http(s.port, get("/data", "http://localhost:3000", "OPTIONS", asked))
        assert response.status == 204
        assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert response.headers["access-control-allow-methods"] == "GET, PUT"
        assert response.headers["access-control-allow-headers"] == "x-token"
        refused = await http(s.port, get("/data", "http://localhost:3000", "OPTIONS"))
        assert refused.status == 405  # not a preflight: an OPTIONS the route does not take
