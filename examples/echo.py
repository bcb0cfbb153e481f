"""The smallest wirehub app: echo every message back.

wirehub serve examples/echo.py:hub --port 8000
wirehub connect ws://127.0.0.1:8000/echo
"""

from wirehub import Hub, WebSocket

hub = Hub()


@hub.websocket("/echo")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


if __name__ == "__main__":
    hub.run()
