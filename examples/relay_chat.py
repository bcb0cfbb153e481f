"""Relay chat: every message a client sends goes to every other client.

make demo        (or: wirehub serve examples/relay_chat.py:hub --port 8000)
then open http://127.0.0.1:8000 in two browser tabs, or run in two terminals:
wirehub connect ws://127.0.0.1:8000/chat

The page is examples/relay_chat/index.html, served by ``hub.mount``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from wirehub import CloseCode, ConnectionClosed, Hub, WebSocket

SEND_TIMEOUT = 5.0  # seconds a receiver may stay behind before it is dropped

hub = Hub()
clients: set[WebSocket] = set()
closing: set[asyncio.Task[None]] = set()  # keeps background closes referenced


@hub.websocket("/chat")
async def chat(ws: WebSocket) -> None:
    clients.add(ws)
    try:
        async for message in ws:
            others = [client for client in clients if client is not ws]
            # Concurrently: one slow receiver delays this sender by at most
            # SEND_TIMEOUT, and the others get the message straight away.
            await asyncio.gather(*(deliver(client, message) for client in others))
    finally:
        clients.discard(ws)


async def deliver(ws: WebSocket, message: str | bytes) -> None:
    """Send to one receiver; a closed or stuck receiver never raises here."""
    try:
        async with asyncio.timeout(SEND_TIMEOUT):
            await ws.send(message)
    except ConnectionClosed:
        pass  # it left; its own handler removes it from `clients`
    except TimeoutError:
        # Still behind after SEND_TIMEOUT: drop it rather than let it hold
        # everyone up. The close runs in the background so we do not wait for it.
        clients.discard(ws)
        task = asyncio.create_task(ws.close(CloseCode.SLOW_CONSUMER, "too slow"))
        closing.add(task)
        task.add_done_callback(closing.discard)


hub.mount("/", Path(__file__).parent / "relay_chat")

if __name__ == "__main__":
    hub.run()
