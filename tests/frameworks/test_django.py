"""wirehub beside a Django ASGI application (examples/frameworks/django_app.py) under uvicorn."""

from __future__ import annotations

import asyncio

import pytest

import wirehub
from tests.conftest import UNIT, http
from tests.frameworks.hosts import post_json, uvicorn

APP = "examples.frameworks.django_app:application"


@pytest.mark.parametrize("view", ["/orders", "/orders/sync"])
async def test_django_views_emit_to_hub_clients(view: str) -> None:
    """A Django view (async, then sync in Django's thread) emits; the hub's client gets it."""
    async with uvicorn(APP) as host:
        async with wirehub.connect(host.ws("/rt/ws")) as client:
            orders: asyncio.Queue[dict[str, int]] = asyncio.Queue()
            client.on("order", orders.put_nowait)
            answer = await post_json(host.url + view, {"id": 7})
            assert answer == (200, {"ok": True, "offset": 1})
            assert await asyncio.wait_for(orders.get(), UNIT) == {"id": 7}
        django_404 = await http(host.port, b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert django_404.status == 404 and django_404.headers["content-type"].startswith(
            "text/html"
        )
        script = await http(host.port, b"GET /rt/wirehub.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert script.status == 200
        _, stderr = await host.stop()
    assert "Application shutdown complete" in stderr and "Traceback" not in stderr
