"""The example apps' own logic, without a browser: the game's world, the editor's store."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pycrdt
import pytest

import wirehub
from tests.browser.examples import load_example
from tests.conftest import serve
from wirehub.brokers.redis import RedisBroker
from wirehub.codes import CloseCode, should_reconnect
from wirehub.exceptions import ConnectionClosed


def test_game_moves_clamps_and_scores() -> None:
    """A steered player moves SPEED units a second, stops at the wall, and scores on a coin."""
    app = load_example("game")
    game = app.Game(random.Random(1))
    player = game.add("p1")
    player.x, player.y = 100.0, 100.0
    game.coins = [(100.0 + app.SPEED / 2, 100.0), *game.coins[1:]]
    game.steer("p1", 1, 0)
    game.step(0.25)
    assert player.x == pytest.approx(100 + app.SPEED / 4) and player.score == 0
    game.step(0.25)
    assert player.score == 1 and game.coins[0] != (100.0 + app.SPEED / 2, 100.0)
    for _ in range(40):
        game.step(0.25)
    assert player.x == app.WIDTH - app.RADIUS


def test_game_snapshot_layout() -> None:
    """The snapshot is the little-endian layout the module documents (and the page decodes)."""
    app = load_example("game")
    game = app.Game(random.Random(2))
    a, b = game.add("a"), game.add("b")
    data = game.snapshot()
    tick, _, count = struct.unpack_from("<IdH", data)
    players = [struct.unpack_from("<HffH", data, 14 + 12 * i) for i in range(count)]
    (coins,) = struct.unpack_from("<H", data, 14 + 12 * count)
    assert (tick, count, coins) == (0, 2, app.COINS)
    assert [p[0] for p in players] == [a.slot, b.slot] == [0, 1]
    assert len(data) == 14 + 12 * count + 2 + 8 * coins


def test_game_prune_spares_new_players() -> None:
    """Players gone without a disconnect are forgotten after the grace, new ones are kept."""
    app = load_example("game")
    game = app.Game(random.Random(3))
    game.add("old")
    for _ in range(10):
        game.step(0.05)
    game.add("new")
    game.prune(set(), grace=5)
    assert list(game.players) == ["new"]


def test_game_full_arena_refuses_with_try_again_later() -> None:
    """The player past MAX_PLAYERS is refused with 1013 (retry later); a huge score packs."""
    app = load_example("game")
    game = app.Game(random.Random(4))
    for i in range(app.MAX_PLAYERS):
        game.add(str(i))
    with pytest.raises(app.Reject) as refused:
        game.add("one more")
    assert refused.value.code == CloseCode.TRY_AGAIN_LATER and should_reconnect(1013)
    game.players["0"].score = 70_000
    assert struct.unpack_from("<HffH", game.snapshot(), 14)[3] == 0xFFFF


def test_chat_nicknames_are_printable() -> None:
    """A name from the query string loses control and invisible format characters."""
    nickname = load_example("chat").nickname
    assert nickname("\x00ada\u200b\x1b[31m ") == "ada[31m"
    assert nickname("\x00\x01") == nickname(None) == "anonymous"
    assert nickname("😀" * 40) == "😀" * 32


def test_editor_store_persists_and_compacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every update survives a reopening; past COMPACT_AFTER rows they are merged into one."""
    app = load_example("editor")
    monkeypatch.setattr(app, "COMPACT_AFTER", 5)
    store = app.Store(tmp_path / "db")
    writer = pycrdt.Doc()
    writer["text"] = text = pycrdt.Text()
    for word in ("one ", "two ", "three ", "four ", "five ", "six "):
        before = writer.get_state()
        text += word
        store.apply("d", writer.get_update(before))
    store.close()
    reopened = app.Store(tmp_path / "db")
    assert str(reopened.doc("d")["text"]) == "one two three four five six "
    assert reopened.db.execute("SELECT COUNT(*) FROM updates").fetchone() == (1,)
    reopened.close()
    again = app.Store(tmp_path / "db")
    assert str(again.doc("d")["text"]) == "one two three four five six "
    again.close()


def test_editor_store_refuses_garbage(tmp_path: Path) -> None:
    """Bytes that are not a Yjs update are refused with an error the page sees, not stored."""
    app = load_example("editor")
    store = app.Store(tmp_path / "db")
    with pytest.raises(app.EventError):
        store.apply("d", b"\xff\xfe not an update")
    assert store.db.execute("SELECT COUNT(*) FROM updates").fetchone() == (0,)
    store.close()


async def test_editor_refuses_a_bad_document_name_for_good(tmp_path: Path) -> None:
    """A bad ``?doc=`` is refused with 1008 and the reason, not 1011 (retried forever)."""
    app = load_example("editor")
    store = app.Store(tmp_path / "db")
    async with serve(app.create_hub(store)) as served:
        with pytest.raises(ConnectionClosed) as refused:
            async with wirehub.connect(served.ws("/ws?doc=../etc"), reconnect=False):
                pass
    assert refused.value.code == CloseCode.POLICY_VIOLATION
    assert "document name" in refused.value.reason
    assert not should_reconnect(refused.value.code)


async def test_chat_room_list_counts_members_on_every_node(redis_url: str, prefix: str) -> None:
    """The chat's ``rooms`` counts the members of both nodes sharing Redis, not its own only."""
    app = load_example("chat")
    hubs = [app.create_hub(), app.create_hub()]
    for hub in hubs:
        hub.broker = RedisBroker(redis_url, prefix=prefix)
    async with (
        serve(hubs[0]) as a,
        serve(hubs[1]) as b,
        wirehub.connect(a.ws("/ws?name=ada")) as ada,
        wirehub.connect(b.ws("/ws?name=bob")) as bob,
    ):
        await ada.join("lobby")
        await bob.join("lobby")
        assert await ada.call("rooms") == await bob.call("rooms") == {"lobby": 2}
