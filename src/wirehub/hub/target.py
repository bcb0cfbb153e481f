"""``Target``: where an emit goes — every peer, one room, or one peer, on every node."""

from __future__ import annotations

from typing import Any

from wirehub.brokers.base import Publication
from wirehub.hub.fanout import Member
from wirehub.hub.node import Node
from wirehub.protocol import messages as wire

__all__ = ["Target"]


class Target:
    """Where an emit goes: every peer, one room, or one peer (on every node).

    Made by ``hub.to(room)``, ``hub.to_peer(peer_id)`` and ``hub.emit``.
    """

    __slots__ = ("node", "peer", "room")

    def __init__(self, node: Node, *, room: str | None = None, peer: str | None = None) -> None:
        self.node = node
        self.room = room
        self.peer = peer

    async def emit(
        self,
        event: str,
        data: Any = None,
        *,
        exclude: Member | str | None = None,
        volatile: bool = False,
    ) -> wire.Position | None:
        """Send ``event`` with ``data`` (JSON-able, or bytes) to the target.

        ``exclude`` (a Peer or a peer id) does not receive it: broadcast
        without the sender (in a room, its client gets a ``skip`` marker at
        the event's position instead: PROTOCOL.md §7). The data is encoded
        once for all receivers.
        ``volatile`` room events get no position and are not kept in history,
        so they are not recovered after a reconnect and push nothing out of
        the history, and a receiver that is behind (its write buffer above
        ``Limits.write_buffer_high``) skips them rather than queueing them:
        typing notices, cursors, a game's snapshots — where a newer one follows.
        Returns the event's position in a room (None for other targets,
        volatile events, or when the broker could not give one).
        """
        body, binary = wire.event_body(event, data)
        excluded = exclude if exclude is None or isinstance(exclude, str) else exclude.id
        publication = Publication(
            body, binary, room=self.room, peer=self.peer, exclude=excluded, volatile=volatile
        )
        return await self.node.publish(publication)
