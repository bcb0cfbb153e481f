"""The HTTP fallback under a real uvicorn: the hub as an ASGI app serves fallback sessions too."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import TICK, UNIT
from tests.frameworks.hosts import get, uvicorn
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


async def test_a_long_poll_whose_client_left_lets_the_session_expire() -> None:
    """Under uvicorn too, a long-poll whose client went away (``http.disconnect``) no longer
    holds its session open: the session expires after Timeouts.session, not after a poll."""
    env = {"WIREHUB_TEST_SESSION": str(UNIT / 4)}
    async with uvicorn(APP, env=env) as host:
        client = await PollClient.open(f"{host.url}/ws", welcome=False)
        try:
            assert client._receiving is not None
            client._receiving.cancel()  # before its first poll: poll by hand
            await (await client.poll(0)).read()  # the welcome
            polling = asyncio.ensure_future(client.poll(1))
            probe = f"{host.url}/test/receiving?session={client.session}"
            async with asyncio.timeout(5 * UNIT):
                while (await get(probe))[1] != b"yes":
                    await asyncio.sleep(TICK)
            polling.cancel()  # the connection is dropped
            async with asyncio.timeout(5 * UNIT):  # else held for Timeouts.poll (25 s)
                while json.loads((await get(f"{host.url}/healthz"))[1])["peers"]:
                    await asyncio.sleep(TICK)
        finally:
            await client.close(None)
