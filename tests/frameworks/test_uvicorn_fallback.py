"""The HTTP fallback under a real uvicorn: the hub as an ASGI app serves fallback sessions too."""

from __future__ import annotations

import pytest

from tests.frameworks.hosts import uvicorn
from tests.hub.fallback_wire import PollClient

APP = "tests.frameworks.apps:hub"


@pytest.mark.parametrize("stream", [False, True], ids=["long-polling", "streaming"])
async def test_a_fallback_session_under_uvicorn(stream: bool) -> None:
    """Under uvicorn a session is welcomed after authentication, answers calls and gets a
    room's events in order (streamed chunk by chunk, or by long-polls)."""
    async with uvicorn(APP) as host, await PollClient.open(f"{host.url}/ws", stream=stream) as c:
        assert (await c.call("whoami"))["data"] == "anyone"
        await c.join("ticks")
        offsets = []
        while len(offsets) < 5:
            message = await c.recv()
            if message["type"] == "event":
                offsets.append(message["offset"])
        assert offsets == list(range(offsets[0], offsets[0] + 5))
