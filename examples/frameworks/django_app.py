"""wirehub beside a Django project in one ASGI process: Django everywhere, the hub under /rt/.

uvicorn examples.frameworks.django_app:application --port 8000

Django's ASGI handler serves HTTP only (no WebSocket, no lifespan), so a
small dispatcher in front sends the lifespan and everything under ``/rt/``
to the hub, the rest to Django. A Django view emits with ``await
hub.to(room).emit(...)`` (an async view runs in the server's event loop; from
a sync view, ``hub.emit_threadsafe(...).result()``). A real project keeps
its settings module; they are inline here to keep the example one file.
"""

from __future__ import annotations

import json
from typing import Any

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from wirehub import Hub, Peer, Request

settings.configure(
    DEBUG=False,
    SECRET_KEY="example only: read it from the environment in a real project",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402 (needs the settings)

hub = Hub()


@hub.on("connect")
async def connect(peer: Peer, request: Request) -> None:
    await peer.join("orders")


async def new_order(request: HttpRequest) -> HttpResponse:
    """``POST /orders`` (a Django view): tell every connected client about the order."""
    order = json.loads(request.body)
    position = await hub.to("orders").emit("order", order)
    return JsonResponse({"ok": True, "offset": None if position is None else position.offset})


def sync_order(request: HttpRequest) -> HttpResponse:
    """The same from a sync view, which Django runs in a worker thread."""
    position = hub.emit_threadsafe("order", json.loads(request.body), room="orders").result()
    return JsonResponse({"ok": True, "offset": None if position is None else position.offset})


urlpatterns = [path("orders", new_order), path("orders/sync", sync_order)]

django_application = get_asgi_application()

PREFIX = "/rt"


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI entry point: the hub gets the lifespan and ``/rt/...``; Django the rest."""
    if scope["type"] == "lifespan":
        await hub(scope, receive, send)
    elif scope["path"].startswith(PREFIX + "/"):
        # Mounted the ASGI way: root_path says where, the hub routes on the rest.
        await hub({**scope, "root_path": scope.get("root_path", "") + PREFIX}, receive, send)
    else:
        await django_application(scope, receive, send)
