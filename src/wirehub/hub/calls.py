"""``Calls``: the server's requests to one client (``await peer.call(...)``).

A call is an ``event`` with an ``id``; the client's handler of that event
answers it with an ``ack`` (its return value) or an ``error``, carrying the
same ``id`` (docs/PROTOCOL.md §4). Ids count from 1 per connection; they are
independent of the client's own request ids (the direction tells them apart).
Flask-SocketIO's ``emit(..., callback=...)`` and Socket.IO's
``emitWithAck`` are the same idea.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from wirehub.exceptions import CallError, CallTimeout, ConnectionClosed
from wirehub.protocol import messages as wire

__all__ = ["Calls"]


class Calls:
    """The calls of one peer that await the client's answer."""

    __slots__ = ("_ids", "_waiting")

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}

    async def call(
        self,
        send: Callable[[bytes, bool], None],
        event: str,
        data: Any,
        timeout: float | None,
    ) -> Any:
        """Send the call with ``send`` and return the client's answer; see ``Peer.call``."""
        id = next(self._ids)
        body, binary = wire.event_body(event, data)
        answer = asyncio.get_running_loop().create_future()
        self._waiting[id] = answer
        try:
            send(*wire.event_message(body, binary, request_id=id))
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            raise CallTimeout(f"call {event!r}", timeout or 0.0) from None
        finally:
            self._waiting.pop(id, None)

    def answered(self, message: wire.Ack | wire.Error, payload: bytes | None) -> bool:
        """The client answered a call; False when no call waits for that id (late or bogus)."""
        answer = self._waiting.pop(message.id, None) if message.id is not None else None
        if answer is None or answer.done():
            return False
        if isinstance(message, wire.Ack):
            answer.set_result(payload if payload is not None else message.data)
        else:
            answer.set_exception(CallError(message.code, message.message, message.details))
        return True

    def closed(self, code: int, reason: str) -> None:
        """The connection closed: every waiting call raises ``ConnectionClosed``."""
        waiting, self._waiting = self._waiting, {}
        for answer in waiting.values():
            if not answer.done():
                answer.set_exception(ConnectionClosed(code, reason))
