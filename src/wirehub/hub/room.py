"""Rooms: named groups of local peers that an emit can target."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wirehub.hub.peer import Peer

__all__ = ["Room", "check_room_name"]

_ROOM_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


def check_room_name(name: object) -> str | None:
    """Why ``name`` cannot be a room name, or None when it can."""
    if not isinstance(name, str):
        return "a room name is a string"
    if not _ROOM_NAME.fullmatch(name):
        return "a room name has 1 to 200 characters and no control characters"
    return None


class Room:
    """The peers of this process in one room. ``members`` is live; do not mutate it."""

    __slots__ = ("members", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: set[Peer] = set()

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        return f"Room({self.name!r}, {len(self.members)} members)"
