"""Collaborative text editing with a CRDT: Yjs in the page, pycrdt on the server.

    wirehub serve examples/editor/app.py:hub --port 8000

then open http://127.0.0.1:8000 in two windows (``/?doc=notes`` picks another
document). Concurrent edits, even at the same place, merge the same way on
every side (Yjs's CRDT, not last-writer-wins), so every page ends with the
same text.

The server holds the authoritative copy of each document in a ``pycrdt.Doc``
and persists every update in SQLite before acknowledging it (``editor.db``
beside this file, or the ``Store`` given to ``create_hub``), so a restart loses nothing. Each
page joins the room ``doc:NAME``; the events (their data is binary: Yjs's own
update and state-vector encodings):

- ``state`` → the server's state vector (what it has);
- ``sync`` (the page's state vector) → the update holding everything the
  page lacks;
- ``update`` (a Yjs update) → applied, stored, then sent to the room's other
  members as a room event ``update``;
- ``cursor`` ``{anchor, head}`` (Yjs relative positions as JSON) → the
  others get ``cursor`` ``{peer, name, color, anchor, head}`` as a *volatile*
  room event: never kept, never replayed, the latest one is all that matters.

A page runs ``state``/``update``/``sync`` after every (re)connection and after
a gap in the room, so whatever it missed or typed offline is exchanged again;
merging a Yjs update twice changes nothing, so repeating it is always safe.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pycrdt

from wirehub import EventError, Hub, Peer, Reject, Request

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
DOC_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
COLORS = ["#e5484d", "#30a46c", "#0090ff", "#f76b15", "#8e4ec6", "#12a594", "#d6409f"]
COMPACT_AFTER = 200  # stored updates of one document before they are merged into one


class Cursor(msgspec.Struct):
    anchor: dict[str, Any] | None = None
    head: dict[str, Any] | None = None


class Store:
    """Documents in memory, every update appended to SQLite (merged into one when loading)."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None  # opened on first use, not at import
        self.docs: dict[str, pycrdt.Doc] = {}

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS updates"
                " (doc TEXT NOT NULL, id INTEGER PRIMARY KEY, data BLOB NOT NULL)"
            )
        return self._db

    def doc(self, name: str) -> pycrdt.Doc:
        """The document ``name``, loaded from the database the first time."""
        doc = self.docs.get(name)
        if doc is None:
            doc = self.docs[name] = pycrdt.Doc()
            doc["text"] = pycrdt.Text()
            rows = self.db.execute("SELECT data FROM updates WHERE doc = ? ORDER BY id", (name,))
            count = 0
            for (data,) in rows:
                doc.apply_update(data)
                count += 1
            if count > COMPACT_AFTER:
                self._compact(name, doc)
        return doc

    def apply(self, name: str, update: bytes) -> None:
        """Merge ``update`` into ``name`` and store it; raises ``EventError`` if it is not one."""
        try:
            self.doc(name).apply_update(update)
        except Exception:
            raise EventError("bad_update", "not a Yjs update") from None
        self.db.execute("INSERT INTO updates (doc, data) VALUES (?, ?)", (name, update))

    def _compact(self, name: str, doc: pycrdt.Doc) -> None:
        with self.db:  # one transaction: the merged update replaces the ones it holds
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM updates WHERE doc = ?", (name,))
            self.db.execute(
                "INSERT INTO updates (doc, data) VALUES (?, ?)", (name, doc.get_update())
            )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def create_hub(store: Store) -> Hub:
    """A new editor hub whose documents live in ``store``."""
    hub = Hub(presence=True)
    hub.on_shutdown(store.close)

    def document(peer: Peer) -> str:
        return str(peer.state["doc"])

    @hub.on("connect")
    def connect(peer: Peer, request: Request) -> None:
        name = request.query.get("doc", "welcome")
        if not DOC_NAME.fullmatch(name):  # refused for good (1008): retrying cannot help
            raise Reject(reason="a document name is 1-64 letters, digits, - or _")
        peer.state["doc"] = name
        color = COLORS[sum(map(ord, peer.id)) % len(COLORS)]
        peer.info.update(name=(request.query.get("name") or "anonymous")[:32], color=color)

    @hub.authorize_join
    def own_document(peer: Peer, room: str) -> bool:
        return room == f"doc:{document(peer)}"

    @hub.on("state")
    def state(peer: Peer) -> bytes:
        return bytes(store.doc(document(peer)).get_state())

    @hub.on("sync")
    def sync(peer: Peer, state_vector: bytes) -> bytes:
        try:
            return bytes(store.doc(document(peer)).get_update(state_vector))
        except Exception:
            raise EventError("bad_state", "not a Yjs state vector") from None

    @hub.on("update")
    async def update(peer: Peer, data: bytes) -> None:
        name = document(peer)
        store.apply(name, data)
        await hub.to(f"doc:{name}").emit("update", data, exclude=peer)

    @hub.on("cursor")
    async def cursor(peer: Peer, where: Cursor) -> None:
        notice = {"peer": peer.id, **peer.info, "anchor": where.anchor, "head": where.head}
        await hub.to(f"doc:{document(peer)}").emit("cursor", notice, exclude=peer, volatile=True)

    hub.mount("/", STATIC)
    return hub


hub = create_hub(Store(HERE / "editor.db"))

if __name__ == "__main__":
    hub.run()
