"""docs/PROTOCOL.md matches the code: message types and fields, error and close codes.

The document is the specification third-party clients are written from, so
every tag and field of ``wirehub.protocol.messages`` and every code of
``wirehub.codes`` must be in it, with the retry and reconnect semantics the
code implements. (``tests/client/test_minimal_client.py`` checks the other
direction: a client written from the document works against the server.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest

from tests.client.test_minimal_client import MiniClient
from tests.conftest import serve
from wirehub import Hub
from wirehub.codes import CloseCode, ErrorCode, is_retryable, should_reconnect
from wirehub.protocol import messages

DOC = (Path(__file__).parent.parent / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")


def message_classes() -> dict[str, type[msgspec.Struct]]:
    """Every tagged Struct of the protocol module, by its ``type`` tag."""
    found = {}
    for value in vars(messages).values():
        if isinstance(value, type) and issubclass(value, msgspec.Struct):
            config = value.__struct_config__
            if config.tag_field == "type" and isinstance(config.tag, str):
                found[config.tag] = value
    return found


def section(tag: str) -> str:
    """The text of the ``#### `tag``` section, up to the next heading."""
    match = re.search(rf"^#### `{tag}`.*?(?=^#)", DOC, re.S | re.M)
    assert match, f"PROTOCOL.md has no section for message type {tag!r}"
    return match.group(0)


def table(heading: str) -> dict[str, list[str]]:
    """The rows of the first table after ``heading``, keyed by their first cell (unquoted)."""
    start = DOC.index(heading)
    rows: dict[str, list[str]] = {}
    for line in DOC[start:].splitlines()[1:]:
        if rows and not line.startswith("|"):
            break
        if line.startswith("|") and not line.startswith("|--"):
            cells = [cell.strip().strip("`") for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_the_tags_are_found() -> None:
    """The introspection sees all fifteen message types (so the checks below check something)."""
    assert set(message_classes()) == {
        "emit", "join", "leave", "ping", "auth",
        "welcome", "event", "ack", "error", "presence", "refresh", "gap", "skip",
        "joined", "left",
    }  # fmt: skip


@pytest.mark.parametrize("tag", sorted(message_classes()))
def test_every_message_type_and_field_is_documented(tag: str) -> None:
    """Each message type has a section whose table lists every field, and a JSON example."""
    text = section(tag)
    documented = set(re.findall(r"^\| `(\w+)`", text, re.M))
    fields = {field.encode_name for field in msgspec.structs.fields(message_classes()[tag])}
    assert documented == fields | {"type"}
    examples = re.findall(r"```json\n(.*?)```", text, re.S)
    assert examples, f"no example for {tag!r}"
    for line in examples[0].replace("\n ", " ").splitlines():
        assert json.loads(line)["type"] == tag


def test_every_error_code_is_documented_with_its_retry_rule() -> None:
    """The error table lists exactly ErrorCode, and its retry column is is_retryable()."""
    rows = table("| code               | retry |")
    assert set(rows) - {"code"} == {code.value for code in ErrorCode}
    for code in ErrorCode:
        assert rows[code.value][0] == ("yes" if is_retryable(code) else "no"), code


def test_every_close_code_is_documented_with_its_reconnect_rule() -> None:
    """The close table lists exactly CloseCode, by name, with should_reconnect() as its column."""
    rows = table("| code | name             | reconnect |")
    assert set(rows) - {"code"} == {str(int(code)) for code in CloseCode}
    for code in CloseCode:
        name, reconnect = rows[str(int(code))][:2]
        assert name == code.name
        assert reconnect == ("yes" if should_reconnect(code) else "no"), code


def test_the_version_is_the_code_version() -> None:
    """The title and the welcome section state the version the server sends."""
    assert DOC.startswith(f"# The wirehub wire protocol, version {messages.PROTOCOL_VERSION}\n")
    assert f"`{messages.PROTOCOL_VERSION}`" in section("welcome")


def test_the_binary_example_decodes_as_described() -> None:
    """The hex example of §1 is a valid binary message with the stated header and payload."""
    block = re.search(r"binary WebSocket message is:\n\n\s*```\n(.*?)```", DOC, re.S)
    assert block
    header, payload = messages.unpack_binary(bytes.fromhex(block.group(1)))
    assert header == b'{"type":"emit","event":"img","id":7}'
    assert payload == bytes.fromhex("deadbeef")
    decoded, data = messages.decode_client(bytes.fromhex(block.group(1)))
    assert isinstance(decoded, messages.Emit) and decoded.id == 7 and data == payload


async def test_the_limits_table_lists_the_welcome_limits() -> None:
    """§10 documents exactly the limits a real server's welcome carries."""
    async with serve(Hub()) as served:
        client = await MiniClient.open(served.ws("/ws"))
        await client.close()
    rows = table("| limit              |")
    assert set(rows) - {"limit"} == set(client.welcome["limits"])
