"""The app the scaling tests serve on several nodes: who am I, a lobby to chat in, a crash."""

from __future__ import annotations

import os
from typing import Any

from wirehub import Hub, Peer, Request


def make_hub(node: str, **kwargs: Any) -> Hub:
    """A hub that puts every peer in ``lobby`` and names itself ``node`` when asked."""
    hub = Hub(**kwargs)

    @hub.on("connect")
    async def connect(peer: Peer, request: Request) -> None:
        await peer.join("lobby")

    @hub.on("whoami")
    def whoami(peer: Peer) -> dict[str, Any]:
        return {"node": node, "pid": os.getpid(), "ip": peer.request.client_ip, "id": peer.id}

    @hub.on("say")
    async def say(peer: Peer, data: Any) -> bool:
        await hub.to("lobby").emit("said", data, exclude=peer)
        return True

    @hub.on("shout")
    async def shout(peer: Peer, data: Any) -> bool:
        await hub.emit("shouted", data)
        return True

    @hub.on("whisper")
    async def whisper(peer: Peer, data: dict[str, str]) -> bool:
        await hub.to_peer(data["to"]).emit("whispered", data["text"])
        return True

    @hub.on("crash")
    def crash(peer: Peer) -> None:
        os._exit(3)  # a worker dying without warning

    return hub


hub = make_hub("worker")
