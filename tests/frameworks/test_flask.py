"""examples/frameworks/flask_app.py: a Flask view emits to the hub's clients (HTTP API, Redis)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

import wirehub
from tests.conftest import UNIT, serve

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/frameworks/flask_app.py"


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    """A fresh copy of the example, configured through its environment variables."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("flask_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


async def post_order(module: ModuleType) -> dict[str, object]:
    """Call the Flask view through Flask's test client, in a thread (it blocks on I/O)."""

    def post() -> dict[str, object]:
        response = module.app.test_client().post("/orders", json={"id": 42})
        assert response.status_code == 200, response.data
        result: dict[str, object] = response.get_json()
        return result

    return await asyncio.to_thread(post)


async def test_view_emits_through_the_http_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default set-up, the view's POST /api/emit reaches a client of the hub."""
    module = load(monkeypatch, WIREHUB_API_KEY="test-key")
    async with serve(module.hub) as served:
        module.HUB_URL = served.url
        async with wirehub.connect(served.ws("/ws")) as client:
            orders: asyncio.Queue[object] = asyncio.Queue()
            client.on("order", orders.put_nowait)
            assert await post_order(module) == {"ok": True, "offset": 1}
            assert await asyncio.wait_for(orders.get(), UNIT) == {"id": 42}


async def test_view_emits_through_redis(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    """With WIREHUB_REDIS, the view's Emitter publishes through Redis to the hub's client."""
    from wirehub.brokers.redis import RedisBroker

    module = load(monkeypatch, WIREHUB_REDIS=redis_url)
    module.hub.broker = RedisBroker(redis_url)
    async with serve(module.hub) as served, wirehub.connect(served.ws("/ws")) as client:
        orders: asyncio.Queue[object] = asyncio.Queue()
        client.on("order", orders.put_nowait)
        assert await post_order(module) == {"ok": True, "offset": 1}
        assert await asyncio.wait_for(orders.get(), UNIT) == {"id": 42}
    module.emitter.close()
