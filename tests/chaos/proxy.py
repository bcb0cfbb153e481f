"""A TCP proxy on loopback that injects faults: delays and drops, per direction or per command.

``Proxy(upstream_port)`` listens on a free 127.0.0.1 port and forwards every
connection to ``upstream_port``. It runs its own event loop in a thread, so
the timing of what it forwards does not depend on how busy the test's loop is.

What it forwards is cut into *messages*: raw chunks as they are read, or —
with ``resp=True`` — whole RESP values (a command going up, a reply coming
down). ``Rule``\\ s pick messages by direction and, in RESP mode, by command:
a reply is matched with the command it answers (replies come in command
order, https://redis.io/docs/latest/develop/reference/protocol-spec/), except
on pub/sub connections, whose pushes answer nothing; there only the commands
going up can be matched. A picked message is held back ``delay`` seconds
(what follows it waits behind it, as on a slow link) or dropped.

``pause()`` stops reading from the upstream side (the server's writes back
up: a slow consumer), ``cut()`` resets every connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["Proxy", "Rule", "parse_resp"]

T = TypeVar("T")
Direction = Literal["up", "down"]  # up: client to server; down: server to client

SUBSCRIBING = {b"SUBSCRIBE", b"SSUBSCRIBE", b"PSUBSCRIBE"}
READ = 65536


@dataclasses.dataclass(eq=False)
class Rule:
    """Which messages to delay or drop.

    ``command`` (RESP mode) is a command name such as ``"SUBSCRIBE"``: going
    up, the command itself; going down, its reply. ``args`` further requires
    the command's first arguments (``("<sha>",)`` for one script's
    ``EVALSHA``). ``limit`` is how many messages the rule affects (None: all).
    """

    direction: Direction
    command: str | None = None
    args: tuple[str, ...] = ()
    delay: float = 0.0
    drop: bool = False
    limit: int | None = None
    matched: int = 0  # messages this rule affected so far

    def picks(self, direction: Direction, command: list[bytes] | None) -> bool:
        if direction != self.direction or (self.limit is not None and self.matched >= self.limit):
            return False
        if self.command is None:
            return True
        if not command or command[0].upper() != self.command.encode():
            return False
        wanted = [arg.encode() for arg in self.args]
        return command[1 : 1 + len(wanted)] == wanted


LINE = b"+-:_#,("  # RESP types carried on their first line
BULK = b"$!="  # a length, then that many bytes
ITEMS = {b"*": 1, b"~": 1, b">": 1, b"%": 2, b"|": 2}  # a count of items (of pairs: 2)


def parse_resp(buffer: bytes | bytearray, start: int = 0) -> tuple[Any, int] | None:
    """One RESP2 or RESP3 value from ``buffer[start:]``: ``(value, end)``, or None if incomplete.

    Strings come back as bytes, aggregates as flat lists, nulls as None; an
    attribute (``|``) is skipped and the value it annotates returned. Raises
    ValueError on bytes that are not RESP (https://redis.io/docs/latest/develop/reference/protocol-spec/).
    """
    end = buffer.find(b"\r\n", start)
    if end < 0:
        return None
    kind, line = bytes(buffer[start : start + 1]), bytes(buffer[start + 1 : end])
    if kind in LINE:
        return line, end + 2
    if kind in BULK:
        size = int(line)
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(buffer) < stop + 2:
            return None
        return bytes(buffer[end + 2 : stop]), stop + 2
    if kind in ITEMS:
        count = int(line)
        if count < 0:
            return None, end + 2
        items, position = [], end + 2
        for _ in range(count * ITEMS[kind]):
            parsed = parse_resp(buffer, position)
            if parsed is None:
                return None
            item, position = parsed
            items.append(item)
        if kind == b"|":
            return parse_resp(buffer, position)
        return items, position
    raise ValueError(f"not RESP: {bytes(buffer[start : start + 16])!r}")


class Proxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream`` with faults on request.

    Use as a context manager (or ``start()``/``close()``); methods are safe to
    call from any thread.
    """

    def __init__(self, upstream: int, *, resp: bool = False) -> None:
        self.upstream = upstream
        self.resp = resp
        self.port = 0
        self.rules: list[Rule] = []
        self.errors: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxy")
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._flowing: asyncio.Event | None = None

    def __enter__(self) -> Proxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def close(self) -> None:
        """Reset every connection, stop listening, end the thread."""
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        if self.errors:
            raise RuntimeError("the proxy failed") from self.errors[0]

    def add(self, rule: Rule) -> Rule:
        """Apply ``rule`` to messages from now on (in the order rules were added)."""
        self._call(_run(lambda: self.rules.append(rule)))  # in place when this returns
        return rule

    def pause(self) -> None:
        """Stop reading from the upstream side of every connection (new ones too)."""
        self._call(_run(lambda: self._flow().clear()))

    def resume(self) -> None:
        self._call(_run(lambda: self._flow().set()))

    def cut(self) -> int:
        """Reset every open connection, both sides; return how many there were."""
        return self._call(_run(self._cut))

    # -- in the proxy's thread ---------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _flow(self) -> asyncio.Event:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        return self._flowing

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._cut()
        tasks = [task for link in self._links for task in link.tasks]
        await asyncio.gather(*tasks, return_exceptions=True)

    def _cut(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort()
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(self, (reader, writer), (up_reader, up_writer))
        self._links.add(link)
        await link.run()
        self._links.discard(link)

    def _picked(self, direction: Direction, command: list[bytes] | None) -> Rule | None:
        for rule in self.rules:
            if rule.picks(direction, command):
                rule.matched += 1
                return rule
        return None


class _Link:
    """One proxied connection: a pipe each way."""

    def __init__(
        self,
        proxy: Proxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.client, self.server = client, server
        self.pending: deque[list[bytes] | None] = deque()  # commands awaiting replies
        self.pubsub = False  # pushes from here on: replies no longer pair with commands
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(self._pipe("up", self.client[0], self.server[1])),
            loop.create_task(self._pipe("down", self.server[0], self.client[1])),
        ]
        # Either side closing (or a fault) ends both: the proxy never half-closes.
        done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = None if task.cancelled() else task.exception()
            if error is not None and not isinstance(error, ConnectionError):
                self.proxy.errors.append(error)  # a bug of the proxy: close() raises it
        self.abort()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def abort(self) -> None:
        for task in self.tasks:
            task.cancel()
        for _, writer in (self.client, self.server):
            writer.transport.abort()

    async def _pipe(
        self, direction: Direction, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        buffer = bytearray()
        while True:
            if direction == "down":
                await self.proxy._flow().wait()
            chunk = await reader.read(READ)
            if not chunk:
                return
            if direction == "down":  # paused while this read was waiting: hold what it got
                await self.proxy._flow().wait()
            buffer += chunk
            for message, value in self._messages(buffer):
                command = self._command(direction, value)
                rule = self.proxy._picked(direction, command)
                if rule is not None and rule.drop:
                    continue
                if direction == "up" and self.proxy.resp and not self.pubsub:
                    self.pending.append(command)  # its reply will come down in turn
                if rule is not None and rule.delay:
                    await asyncio.sleep(rule.delay)
                writer.write(message)
                await writer.drain()

    def _messages(self, buffer: bytearray) -> list[tuple[bytes, Any]]:
        """Take the complete messages out of ``buffer``, each with its RESP value (if RESP)."""
        if not self.proxy.resp:
            message = bytes(buffer)
            buffer.clear()
            return [(message, None)]
        messages, start = [], 0
        while (parsed := parse_resp(buffer, start)) is not None:
            value, end = parsed
            messages.append((bytes(buffer[start:end]), value))
            start = end
        del buffer[:start]
        return messages

    def _command(self, direction: Direction, value: Any) -> list[bytes] | None:
        """The command a message is (going up) or answers (coming down), when known."""
        if not self.proxy.resp:
            return None
        if direction == "up":
            command = value if isinstance(value, list) and value else None
            if command is not None and command[0].upper() in SUBSCRIBING:
                self.pubsub = True
            return command
        if self.pubsub or not self.pending:
            return None
        return self.pending.popleft()


async def _run(func: Callable[[], T]) -> T:
    return func()
