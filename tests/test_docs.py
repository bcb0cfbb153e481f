"""Every code block of the documentation runs (tests/docblocks.py says how).

A reader copies these blocks; a block that no longer works is a bug, found
here rather than by the reader. Blocks run in file order with what the file
set up before them, as a reader following the page would.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docblocks import ROOT, Session, blocks, documents


@pytest.mark.parametrize("path", documents(), ids=lambda path: str(path.relative_to(ROOT)))
def test_code_blocks_run(path: Path) -> None:
    """Each code block of this file runs (or parses, where marked) and prints what it shows."""
    with Session(path) as session:
        for block in blocks(path):
            session.run(block)


def test_markers_give_a_reason() -> None:
    """A block marked not to run says why (the marker is the only excuse)."""
    for path in documents():
        for block in blocks(path):
            if block.marker == "not run":
                assert len(block.argument.split()) >= 3, f"{block.where}: say why in the marker"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def test_links_resolve() -> None:
    """Every relative link of the documentation points at a file (and heading) that exists."""
    broken = []
    for path in documents():
        text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
