"""Flask-SocketIO's ways of refusing a connection refuse it: a final close, no reconnection."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import pytest

from tests.client.conftest import FAST, Node
from tests.client.test_reconnection import restart
from tests.conftest import UNIT
from wirehub import ConnectionClosed, Hub
from wirehub.client import Client
from wirehub.hub.peer import Peer

REFUSALS: dict[str, tuple[Any, int, str]] = {  # how the handler refuses -> the close it gives
    "return False": (False, 1008, "forbidden"),
    "ConnectionRefusedError": (ConnectionRefusedError("banned"), 1008, "banned"),
    "ConnectionRefusedError()": (ConnectionRefusedError(), 1008, "forbidden"),
}


def refusing_hub(refusal: list[Any]) -> tuple[Hub, list[int]]:
    """A hub whose connect handler refuses with ``refusal[0]`` once it is set (None: accepts);
    also returns the count of connections it saw."""
    hub, seen = Hub(), [0]

    @hub.on("connect")
    async def connect(peer: Peer) -> bool | None:
        seen[0] += 1
        if isinstance(refusal[0], BaseException):
            raise refusal[0]
        return refusal[0]  # type: ignore[no-any-return]

    return hub, seen


@pytest.mark.parametrize("how", REFUSALS)
async def test_a_refusing_connect_handler_closes_finally(node: Any, how: str) -> None:
    """Returning False or raising ConnectionRefusedError refuses: connect raises ConnectionClosed
    with 1008 and the reason, and a client refused on reconnecting stops there."""
    refusal, code, reason = REFUSALS[how]
    state: list[Any] = [refusal]
    hub, seen = refusing_hub(state)
    server: Node = await node(hub)
    with pytest.raises(ConnectionClosed) as raised:
        await asyncio.wait_for(Client(server.url, reconnect=FAST).connect(), UNIT)
    assert (raised.value.code, raised.value.reason) == (code, reason)

    state[0] = None
    client = Client(server.url, reconnect=FAST)
    await client.connect()
    state[0] = refusal
    await restart(server)
    why = await asyncio.wait_for(client.wait_closed(), 2 * UNIT)
    assert (why.code, why.reason) == (code, reason)
    assert seen[0] == 3  # refused, accepted, refused: no attempt after the final close


async def test_a_connection_the_os_refused_is_a_failure_not_a_refusal(node: Any) -> None:
    """A ConnectionRefusedError carrying an errno (the handler's own connection to a database
    was refused) is a crash: 1011, which clients retry."""
    error = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    hub, _ = refusing_hub([error])
    server: Node = await node(hub)
    with pytest.raises(ConnectionClosed) as raised:
        await asyncio.wait_for(Client(server.url, reconnect=FAST).connect(), UNIT)
    assert raised.value.code == 1011
