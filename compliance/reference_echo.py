r"""Reference Autobahn agent: the `websockets` library's own asyncio echo server.

Run it through the compliance runner to see what the engine wirehub builds on
scores by itself (see compliance/README.md for the expected table):

    python compliance/run.py --cases quick --agent websockets --server-cmd \
        "{python} compliance/reference_echo.py --port {port}"

Every path echoes; permessage-deflate is on (the websockets default), and
messages up to 16 MiB are accepted, like the wirehub echo example in the runner.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["echo", "main"]

MAX_SIZE = 16 * 1024 * 1024


async def echo(websocket: ServerConnection) -> None:
    """Send every message back unchanged, as text or binary as it came."""
    try:
        async for message in websocket:
            await websocket.send(message)
    except ConnectionClosed:
        # Autobahn closes abruptly on purpose in many cases; not an error here.
        pass


async def run(host: str, port: int, max_size: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with serve(echo, host, port, max_size=max_size):
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-size", type=int, default=MAX_SIZE)
    args = parser.parse_args()
    asyncio.run(run(args.host, args.port, args.max_size))


if __name__ == "__main__":
    main()
