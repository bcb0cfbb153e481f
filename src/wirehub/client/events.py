"""What client handlers receive, and the registry that calls them.

A handler is a plain function or a coroutine function. It is called with as
many of its positional arguments as it has: an event handler with ``()``,
``(data)`` or ``(data, info)`` — the second argument is always an
``EventInfo``; a lifecycle callback with ``()`` or its one argument. A
handler that needs more (or a keyword-only argument without a default) is
refused when it is registered, with ``TypeError``. Exceptions raised by
handlers are logged and never reach the client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Callable
from typing import Any

from wirehub.exceptions import ConnectionClosed
from wirehub.protocol.messages import Position

__all__ = [
    "LIFECYCLE",
    "EventInfo",
    "Gap",
    "Handler",
    "Handlers",
    "PresenceChange",
    "Reconnected",
]

logger = logging.getLogger("wirehub.client")

Handler = Callable[..., Any]

LIFECYCLE = frozenset(
    {"connect", "disconnect", "reconnect", "error", "presence", "gap", "joined", "left"}
)
"""Names ``Client.on`` reserves for the client's own callbacks (not server events)."""


@dataclasses.dataclass(frozen=True, slots=True)
class EventInfo:
    """Where an event came from: its name, and for room events the room and position."""

    event: str
    room: str | None = None
    epoch: str | None = None
    offset: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PresenceChange:
    """A ``presence`` message: a member (``{"id", "info"}``) joined or left ``room``."""

    room: str
    joined: dict[str, Any] | None = None
    left: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Reconnected:
    """What the ``reconnect`` callback gets once a lost connection is back.

    ``attempts`` is how many attempts it took. ``recovered`` maps every room
    the client re-joined to whether the events it missed were replayed
    (True) or may be lost (False: refetch that room's state).
    """

    attempts: int
    recovered: dict[str, bool]
    closed: ConnectionClosed | None = None
    """How the server closed the lost connection, when the ``disconnect`` callback could
    only say 1006: e.g. 4008, a slow consumer cut while this client was not reading."""

    @property
    def gaps(self) -> list[str]:
        """The rooms whose missed events could not all be replayed."""
        return [room for room, ok in self.recovered.items() if not ok]


@dataclasses.dataclass(frozen=True, slots=True)
class Gap:
    """What the ``gap`` callback gets: events of ``room`` may be missing.

    The events after ``last`` (the last position the client processed; None
    if none) up to and including ``position`` (where the room's stream goes
    on: the next event delivered follows it; None when it does not go on,
    e.g. the room could not be re-joined) may never be delivered. The
    callback runs before any later event of the room. ``reason``:

    - ``"server"``: the server sent a ``gap`` notice; ``detail`` is its reason;
    - ``"recovery"``: the re-join after a reconnection could not replay everything;
    - ``"jump"``: offsets were skipped and a re-join could not fill them;
    - ``"epoch"``: the room's epoch changed (its history was lost).

    Refetch what the room's events build (e.g. ``join(room, history=N)``, or
    an application request) rather than trusting it.
    """

    room: str
    reason: str
    last: Position | None
    position: Position | None
    detail: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class _Entry:
    func: Handler
    nargs: int  # how many positional arguments it takes (capped by the caller)
    is_async: bool


def _count_args(func: Handler, name: str, most: int) -> int:
    """How many of its ``most`` arguments ``func`` takes; TypeError if it needs others."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return most  # no signature to read (some builtins): give it everything
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p.name for p in positional if p.default is p.empty]
    keyword = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if len(required) > most or keyword:
        required += keyword
        takes = "(data) or (data, info: EventInfo)" if most == 2 else "one argument or none"
        raise TypeError(
            f"{func!r} cannot handle {name!r}: it requires {', '.join(required)}, "
            f"but it is called with {takes}"
        )
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return most
    return min(len(positional), most)


class Handlers:
    """Handlers by name. Registration is safe from any thread (lists are replaced, not mutated)."""

    def __init__(self) -> None:
        self._by_name: dict[str, tuple[_Entry, ...]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()

    def add(self, name: str, func: Handler) -> None:
        """Register ``func`` for ``name`` (after the ones already there).

        Raises ``TypeError`` when ``func`` is not callable, or requires more
        arguments than a ``name`` handler gets (see the module docstring).
        """
        if not callable(func):
            raise TypeError(f"a handler must be callable, not {func!r}")
        nargs = _count_args(func, name, 1 if name in LIFECYCLE else 2)
        entry = _Entry(func, nargs, inspect.iscoroutinefunction(func))
        self._by_name[name] = (*self._by_name.get(name, ()), entry)

    def remove(self, name: str, func: Handler | None = None) -> None:
        """Unregister ``func`` for ``name``, or every handler of ``name`` when None."""
        kept = tuple(e for e in self._by_name.get(name, ()) if func is not None and e.func != func)
        if kept:
            self._by_name[name] = kept
        else:
            self._by_name.pop(name, None)

    def first(self, name: str) -> Handler | None:
        """The first handler of ``name`` (the one that answers a call), called with the
        arguments it takes; None when there is none."""
        entries = self._by_name.get(name)
        if not entries:
            return None
        entry = entries[0]
        return lambda *args: entry.func(*args[: entry.nargs])

    def has(self, name: str) -> bool:
        """Whether any handler is registered for ``name``."""
        return name in self._by_name

    def call(self, name: str, *args: Any) -> None:
        """Call every handler of ``name``: plain ones now, in order; coroutines as tasks."""
        for entry in self._by_name.get(name, ()):
            try:
                result = entry.func(*args[: entry.nargs])
                if entry.is_async or inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self.tasks.add(task)
                    task.add_done_callback(self._task_done)
            except Exception:
                logger.exception("handler %r for %r failed", entry.func, name)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("async handler failed", exc_info=task.exception())

    def cancel(self) -> None:
        """Cancel the async handlers still running (the client is closing)."""
        for task in list(self.tasks):
            task.cancel()
