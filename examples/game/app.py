"""A small real-time multiplayer game: coin collecting in a shared arena.

    wirehub serve examples/game/app.py:hub --port 8000

then open http://127.0.0.1:8000 in two windows (arrow keys or WASD), and
``/?spectate=1`` to watch. The server is authoritative: pages send only their
input (which way they want to go), the simulation runs on the server at a
fixed rate (``TICK_HZ``) in a background task, and each tick is broadcast as
one compact binary snapshot. Pages draw between the last two snapshots they
got (interpolation), so 20 updates a second look smooth.

Snapshots are *volatile* room events: not numbered, not kept, not recovered,
and dropped for a page whose connection is behind rather than queued behind
fresher ones — an old position is worth nothing once a new one exists.
A snapshot carries only numbers: who plays in which slot (name, colour) is
asked with the ``roster`` event when the set of slots changes.

Players are in the room ``arena``; spectators in ``arena:watch``; both get
every snapshot. The game lives in one process: it is the one place that
decides where everybody is, so serve it with one worker.

Snapshot layout (little-endian): ``u32`` tick, ``f64`` server time in
milliseconds, ``u16`` players, then per player ``u16`` slot, ``f32`` x,
``f32`` y, ``u16`` score; ``u16`` coins, then per coin ``f32`` x, ``f32`` y.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import struct
import time
from pathlib import Path

import msgspec

from wirehub import Hub, Peer, Reject, Request
from wirehub.codes import CloseCode

STATIC = Path(__file__).resolve().parent / "static"
WIDTH, HEIGHT = 960.0, 600.0
TICK_HZ = 20
SPEED = 240.0  # world units per second
RADIUS = 18.0
COIN_RADIUS = 9.0
COINS = 10
MAX_PLAYERS = 200
COLORS = ["#ff6b6b", "#4dabf7", "#51cf66", "#fcc419", "#cc5de8", "#ff922b", "#20c997", "#f06595"]
ARENA = "arena"
WATCH = "arena:watch"

logger = logging.getLogger("game")

_HEAD = struct.Struct("<IdH")
_PLAYER = struct.Struct("<HffH")
_COUNT = struct.Struct("<H")
_COIN = struct.Struct("<ff")


class Input(msgspec.Struct):
    """Which way a player wants to go: each of ``dx``, ``dy`` is -1, 0 or 1."""

    dx: int = 0
    dy: int = 0


class Player:
    __slots__ = ("born", "dx", "dy", "score", "slot", "x", "y")

    def __init__(self, slot: int, x: float, y: float, born: int) -> None:
        self.slot = slot
        self.x, self.y = x, y
        self.dx = self.dy = 0
        self.score = 0
        self.born = born  # the tick it joined at


class Game:
    """The world: players by peer id, coins, and one step of the simulation (no I/O)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.players: dict[str, Player] = {}
        self.coins = [self._spot(COIN_RADIUS) for _ in range(COINS)]
        self.tick = 0

    def add(self, peer_id: str) -> Player:
        """A new player in a free slot; raises ``Reject`` (1013: try again later) when full."""
        used = {p.slot for p in self.players.values()}
        slot = next((s for s in range(MAX_PLAYERS) if s not in used), None)
        if slot is None:
            reason = f"the arena has {MAX_PLAYERS} players already"
            raise Reject(reason=reason, code=CloseCode.TRY_AGAIN_LATER)
        player = self.players[peer_id] = Player(slot, *self._spot(RADIUS), self.tick)
        return player

    def remove(self, peer_id: str) -> None:
        self.players.pop(peer_id, None)

    def prune(self, connected: set[str] | dict[str, object], grace: int) -> None:
        """Forget players that are not ``connected`` and joined more than ``grace`` ticks ago.

        The ``disconnect`` handler removes players; this catches one whose
        connection closed between the ``connect`` handler and its welcome.
        """
        for peer_id in [i for i, p in self.players.items() if i not in connected]:
            if self.tick - self.players[peer_id].born > grace:
                del self.players[peer_id]

    def steer(self, peer_id: str, dx: int, dy: int) -> None:
        player = self.players.get(peer_id)
        if player is not None:
            player.dx, player.dy = max(-1, min(1, dx)), max(-1, min(1, dy))

    def step(self, dt: float) -> None:
        """Move everybody ``dt`` seconds; a player touching a coin scores and the coin moves."""
        self.tick += 1
        for player in self.players.values():
            if player.dx or player.dy:
                norm = SPEED * dt / math.hypot(player.dx, player.dy)
                player.x = min(max(player.x + player.dx * norm, RADIUS), WIDTH - RADIUS)
                player.y = min(max(player.y + player.dy * norm, RADIUS), HEIGHT - RADIUS)
            reach = (RADIUS + COIN_RADIUS) ** 2
            for i, (cx, cy) in enumerate(self.coins):
                if (player.x - cx) ** 2 + (player.y - cy) ** 2 <= reach:
                    player.score += 1
                    self.coins[i] = self._spot(COIN_RADIUS)

    def snapshot(self) -> bytes:
        """This tick as bytes (see the module's docstring for the layout)."""
        parts = [_HEAD.pack(self.tick, time.time() * 1000, len(self.players))]
        parts += [  # the score is a u16 on the wire: a long game stops at 65535, never crashes
            _PLAYER.pack(p.slot, p.x, p.y, min(p.score, 0xFFFF)) for p in self.players.values()
        ]
        parts.append(_COUNT.pack(len(self.coins)))
        parts += [_COIN.pack(x, y) for x, y in self.coins]
        return b"".join(parts)

    def _spot(self, margin: float) -> tuple[float, float]:
        return (
            self.rng.uniform(margin, WIDTH - margin),
            self.rng.uniform(margin, HEIGHT - margin),
        )


def create_hub(tick_hz: float = TICK_HZ) -> Hub:
    """A new game hub, simulating at ``tick_hz`` ticks per second once it starts."""
    hub = Hub()
    game = Game()

    @hub.on_startup
    def start_ticking() -> None:
        hub.start_background_task(run(hub, game, tick_hz))

    @hub.on("connect")
    def connect(peer: Peer, request: Request) -> None:
        name = (request.query.get("name") or "player").strip()[:20] or "player"
        peer.info["name"] = name
        if request.query.get("spectate") == "1":
            peer.state["spectator"] = True
            return
        player = game.add(peer.id)
        peer.info.update(slot=player.slot, color=COLORS[player.slot % len(COLORS)])

    @hub.authorize_join
    def one_room(peer: Peer, room: str) -> bool:
        return room == (WATCH if peer.state.get("spectator") else ARENA)

    @hub.on("input")
    def steer(peer: Peer, wanted: Input) -> None:
        game.steer(peer.id, wanted.dx, wanted.dy)

    @hub.on("roster")
    def roster(peer: Peer) -> dict[str, dict[str, object]]:
        """Who plays in which slot: ``{slot: {name, color, peer}}``."""
        return {
            str(p.info["slot"]): {"name": p.info["name"], "color": p.info["color"], "peer": p.id}
            for p in hub.peers.values()
            if "slot" in p.info and p.id in game.players
        }

    @hub.on("disconnect")
    def disconnect(peer: Peer) -> None:
        game.remove(peer.id)

    hub.mount("/", STATIC)
    return hub


async def run(hub: Hub, game: Game, tick_hz: float) -> None:
    """Step the world at a fixed rate and broadcast each tick to players and spectators."""
    loop = asyncio.get_running_loop()
    period = 1 / tick_hz
    due = loop.time()
    while True:
        game.prune(hub.peers, grace=round(5 * tick_hz))
        game.step(period)
        snapshot = game.snapshot()
        for room in (ARENA, WATCH):
            try:
                await hub.to(room).emit("snapshot", snapshot, volatile=True)
            except Exception as exc:  # the broker is unreachable: this tick is lost, go on
                logger.warning("snapshot not sent: %r", exc)
        due = max(due + period, loop.time() + period / 2)  # late: skip a tick, never burst
        await asyncio.sleep(max(0.0, due - loop.time()))


hub = create_hub()

if __name__ == "__main__":
    hub.run()
