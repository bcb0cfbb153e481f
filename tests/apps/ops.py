"""The app the operations tests serve: a room to join, a handler that fails, who am I."""

from __future__ import annotations

import os
from typing import Any

from wirehub import Hub, Peer


def make_hub(**kwargs: Any) -> Hub:
    """A hub whose ``fail`` handler raises and whose ``say`` emits to a room."""
    hub = Hub(**kwargs)

    @hub.on("fail")
    def fail(peer: Peer, data: Any) -> None:
        raise RuntimeError("this handler always fails")

    @hub.on("say")
    async def say(peer: Peer, data: dict[str, Any]) -> bool:
        await hub.to(data["room"]).emit("said", data["text"], exclude=peer)
        return True

    @hub.on("whoami")
    def whoami(peer: Peer) -> dict[str, Any]:
        return {"pid": os.getpid(), "id": peer.id}

    return hub


hub = make_hub()
