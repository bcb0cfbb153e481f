"""The browser client's copies of the wire codes equal ``wirehub.codes`` (no drift).

``src/wirehub/static/wirehub.js`` keeps its close and error codes in two
literal tables, each between ``// BEGIN NAME`` and ``// END NAME`` comments,
one entry per line. These tests parse them with regular expressions, so the
tables must stay literal.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wirehub.codes import RETRY_AFTER, CloseCode, ErrorCode, should_reconnect

JS = Path(__file__).resolve().parents[2] / "src" / "wirehub" / "static" / "wirehub.js"

CLOSE_ENTRY = re.compile(r"^\s*([A-Z_]+): \{ code: (\d+), reconnect: (true|false) \},$")
ERROR_ENTRY = re.compile(r'^\s*([A-Z_]+): "([a-z_]+)",$')


def block(name: str) -> list[str]:
    """The lines of the ``const NAME = {...};`` table between its BEGIN/END markers."""
    source = JS.read_text(encoding="utf-8")
    match = re.search(
        rf"^// BEGIN {name}\nconst {name} = \{{\n(.*?)^\}};\n// END {name}$",
        source,
        re.MULTILINE | re.DOTALL,
    )
    assert match is not None, f"no literal `const {name} = {{...}};` block in {JS.name}"
    return match.group(1).splitlines()


def parse(name: str, entry: re.Pattern[str]) -> list[tuple[str, ...]]:
    rows = []
    for line in block(name):
        found = entry.match(line)
        assert found is not None, f"{name}: cannot parse {line!r}"
        rows.append(found.groups())
    return rows


def test_close_codes_match_close_code() -> None:
    """Every CloseCode is in CLOSE_CODES with its name and value, and nothing else is."""
    table = {name: int(code) for name, code, _ in parse("CLOSE_CODES", CLOSE_ENTRY)}
    assert table == {code.name: code.value for code in CloseCode}


@pytest.mark.parametrize("code", list(CloseCode), ids=lambda code: code.name)
def test_reconnect_matches_should_reconnect(code: CloseCode) -> None:
    """The ``reconnect`` flag of each close code is ``should_reconnect(code)``."""
    table = {int(value): flag == "true" for _, value, flag in parse("CLOSE_CODES", CLOSE_ENTRY)}
    assert table[code.value] is should_reconnect(code)


def test_error_codes_match_error_code() -> None:
    """ERROR_CODES has exactly ErrorCode's names and values."""
    table = dict(parse("ERROR_CODES", ERROR_ENTRY))
    assert table == {code.name: code.value for code in ErrorCode}


def test_client_is_a_dependency_free_module() -> None:
    """wirehub.js imports nothing and exports ``connect``: it loads from any page as is."""
    source = JS.read_text(encoding="utf-8")
    assert not re.search(r"^\s*import\b", source, re.MULTILINE)
    assert re.search(r"^export \{[^}]*\bconnect,", source, re.MULTILINE)


def test_retry_after_is_read_like_wirehub_codes() -> None:
    """wirehub.js reads a close reason's retry_after with wirehub.codes' own pattern."""
    found = re.search(r"const match = /(.+?)/\.exec\(reason", JS.read_text(encoding="utf-8"))
    assert found is not None, "no retry_after pattern in wirehub.js"
    assert found.group(1) == RETRY_AFTER.pattern
