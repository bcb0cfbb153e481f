"""wirehub's event layer served by uvicorn as an ASGI application (``uvicorn app:hub``).

The same hub as ``wirehub_events.py`` (same handlers, same "wh" dialect on
``/ws``); only the host differs: uvicorn with httptools, uvloop and its
``websockets-sansio`` WebSocket implementation (the engine the native server
embeds too), default keepalive on both sides.
So the ratio to ``wirehub_events`` is the cost of hosting the hub under ASGI.
"""

from __future__ import annotations

import uvicorn
from _common import make_parser, raise_fd_limit
from wirehub_events import build

if __name__ == "__main__":
    raise_fd_limit()
    args = make_parser(__doc__ or "").parse_args()
    uvicorn.run(
        build(args.compression, False),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=args.compression,
        lifespan="on",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )
