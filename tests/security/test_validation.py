"""Payload validation from annotations: every supported kind, with the path of the bad field."""

from __future__ import annotations

import dataclasses
import enum
import sys
from typing import Annotated, Any, Literal, TypedDict

import msgspec
import pydantic
import pytest

from tests.conftest import serve
from tests.hub.wire import WireClient
from wirehub import Hub, Peer
from wirehub.exceptions import ConfigError


class Point(msgspec.Struct):
    x: int
    y: int


class Shape(msgspec.Struct):
    name: str
    points: list[Point]
    color: Literal["red", "blue"] = "red"
    size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10


@dataclasses.dataclass
class Move:
    dx: int
    dy: int = 0


class Note(TypedDict):
    title: str
    tags: list[str]


class Level(enum.Enum):
    LOW = "low"
    HIGH = "high"


class User(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=0)


class Team(pydantic.BaseModel):
    members: list[User]


def validation_hub() -> Hub:
    hub = Hub()

    def echo_as(event: str, kind: Any) -> None:
        def handler(peer: Peer, data: Any) -> Any:
            if isinstance(data, msgspec.Struct):
                return msgspec.structs.asdict(data) | {"_type": type(data).__name__}
            if dataclasses.is_dataclass(data):
                return dataclasses.asdict(data) | {"_type": type(data).__name__}  # type: ignore[arg-type]
            if isinstance(data, pydantic.BaseModel):
                return data.model_dump() | {"_type": type(data).__name__}
            if isinstance(data, list) and data and isinstance(data[0], pydantic.BaseModel):
                return [item.model_dump() for item in data]
            if isinstance(data, enum.Enum):
                return data.value
            return data

        handler.__annotations__ = {"peer": Peer, "data": kind, "return": Any}
        hub.on(event)(handler)

    echo_as("shape", Shape)
    echo_as("move", Move)
    echo_as("note", Note)
    echo_as("user", User)
    echo_as("team", Team)
    echo_as("users", list[User])
    echo_as("ints", list[int])
    echo_as("level", Level)
    echo_as("maybe", Point | None)
    echo_as("count", int)
    return hub


GOOD = [
    ("shape", {"name": "tri", "points": [{"x": 1, "y": 2}]}, {"color": "red", "size": 10}),
    ("move", {"dx": 3}, {"dx": 3, "dy": 0, "_type": "Move"}),
    ("note", {"title": "t", "tags": ["a"]}, {"title": "t", "tags": ["a"]}),
    ("user", {"name": "ada", "age": 36}, {"name": "ada", "age": 36, "_type": "User"}),
    ("team", {"members": [{"name": "a", "age": 1}]}, {"_type": "Team"}),
    ("users", [{"name": "a", "age": 1}], [{"name": "a", "age": 1}]),
    ("ints", [1, 2, 3], [1, 2, 3]),
    ("level", "high", "high"),
    ("maybe", None, None),
    ("count", 7, 7),
]

BAD = [
    # (event, data, path, error fragment)
    ("shape", {"points": []}, "$.name", "missing required field `name`"),
    ("shape", {"name": 5, "points": []}, "$.name", "Expected `str`, got `int`"),
    ("shape", {"name": "t", "points": [{"x": 1, "y": 2}, {"x": 1}]}, "$.points[1].y", "missing"),
    ("shape", {"name": "t", "points": [{"x": "1", "y": 2}]}, "$.points[0].x", "Expected `int`"),
    ("shape", {"name": "t", "points": [], "color": "green"}, "$.color", "Invalid enum value"),
    ("shape", {"name": "t", "points": [], "size": 0}, "$.size", ">= 1"),
    ("shape", [1, 2], "$", "Expected `object`, got `array`"),
    ("shape", None, "$", "Expected `object`, got `null`"),
    ("move", {"dx": "far"}, "$.dx", "Expected `int`, got `str`"),
    ("move", {}, "$.dx", "missing required field `dx`"),
    ("note", {"title": "t", "tags": "a"}, "$.tags", "Expected `array`, got `str`"),
    ("note", {"title": "t", "tags": [1]}, "$.tags[0]", "Expected `str`"),
    ("user", {"name": "ada", "age": -1}, "$.age", "greater than or equal to 0"),
    ("user", {"age": 1}, "$.name", "Field required"),
    ("user", "ada", "$", "object"),
    ("team", {"members": [{"name": "a", "age": 1}, {"name": "b"}]}, "$.members[1].age", "required"),
    ("users", [{"name": "a", "age": 1}, {"name": 2, "age": 1}], "$[1].name", "string"),
    ("ints", [1, "two"], "$[1]", "Expected `int`, got `str`"),
    ("level", "medium", "$", "Invalid enum value 'medium'"),
    ("maybe", {"x": 1}, "$.y", "missing required field `y`"),
    ("count", 1.5, "$", "Expected `int`, got `float`"),
]


@pytest.fixture(scope="module")
def hub() -> Hub:
    return validation_hub()


@pytest.mark.parametrize(("event", "data", "expected"), GOOD, ids=[g[0] for g in GOOD])
async def test_valid_data_reaches_the_handler_typed(
    hub: Hub, event: str, data: Any, expected: Any
) -> None:
    """Valid data is decoded into the annotated type (Struct, dataclass, TypedDict, model…)."""
    async with serve(hub) as served, await WireClient.open(served.ws("/ws")) as client:
        reply = await client.call(event, data)
    assert reply["type"] == "ack", reply
    if isinstance(expected, dict):
        assert expected.items() <= reply["data"].items()
    else:
        assert reply["data"] == expected


@pytest.mark.parametrize(
    ("event", "data", "path", "error"), BAD, ids=[f"{b[0]}-{b[2]}" for b in BAD]
)
async def test_invalid_data_is_refused_with_its_path(
    hub: Hub, event: str, data: Any, path: str, error: str
) -> None:
    """Invalid data: ``invalid_data`` with ``details.path`` pointing at the field, and a
    message saying what is wrong; the handler does not run; the connection stays open."""
    async with serve(hub) as served, await WireClient.open(served.ws("/ws")) as client:
        reply = await client.call(event, data)
        assert reply["type"] == "error" and reply["code"] == "invalid_data", reply
        assert reply["details"]["path"] == path, reply
        assert error in reply["details"]["error"], reply
        assert reply["message"] == f"invalid data at {path}: {reply['details']['error']}"
        assert (await client.call("count", 1))["data"] == 1


class Opaque:
    """A class neither msgspec nor pydantic knows how to build."""


def test_unvalidatable_types_fail_at_registration() -> None:
    """A type neither msgspec nor pydantic can validate is a ConfigError when registering."""
    hub = Hub()

    def handler(peer: Peer, data: Opaque) -> None:
        pass

    with pytest.raises(ConfigError, match="cannot validate"):
        hub.on("x")(handler)


async def test_binary_data_needs_a_bytes_handler(hub: Hub) -> None:
    """Binary payloads reach only handlers without a type or typed ``bytes``."""
    async with serve(hub) as served, await WireClient.open(served.ws("/ws")) as client:
        header = b'{"type":"emit","event":"shape","id":1}'
        await client.ws.send(len(header).to_bytes(4, "big") + header + b"\x00\x01")
        reply = await client.recv()
        assert reply["code"] == "invalid_data" and "binary" in reply["message"]


class Loose(msgspec.Struct):
    name: str
    extra: object = None


async def test_object_annotations_mean_any_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """``object`` in a data annotation (``dict[str, object]``, a Struct field, ``object``
    itself) means any JSON value, as ``Any`` does: msgspec decodes it, pydantic or not."""
    monkeypatch.setitem(sys.modules, "pydantic", None)  # not installed: msgspec alone
    hub = Hub()

    @hub.on("mapping")
    def mapping(peer: Peer, data: dict[str, object]) -> object:
        return data

    @hub.on("loose")
    def loose(peer: Peer, data: Loose) -> object:
        return [data.name, data.extra]

    @hub.on("anything")
    def anything(peer: Peer, data: object) -> object:
        return data if not isinstance(data, bytes) else f"{len(data)} bytes"

    async with serve(hub) as served, await WireClient.open(served.ws("/ws")) as client:
        assert (await client.call("mapping", {"a": [1, {"b": None}]}))["data"] == {
            "a": [1, {"b": None}]
        }
        assert (await client.call("mapping", [1]))["code"] == "invalid_data"
        assert (await client.call("loose", {"name": "n", "extra": {"x": 1}}))["data"] == [
            "n",
            {"x": 1},
        ]
        assert (await client.call("anything", 3.5))["data"] == 3.5
        header = b'{"type":"emit","event":"anything","id":9}'
        await client.ws.send(len(header).to_bytes(4, "big") + header + b"\x00\x01")
        assert (await client.recv())["data"] == "2 bytes"
