"""Imports point down the layers only (DESIGN.md): cli → server → hub → brokers → protocol/http.

Read from the source with ``ast``, so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wirehub

SRC = Path(wirehub.__file__).parent

# The layer of each top-level name under ``wirehub``.
LAYER_OF = {
    "codes": "base",
    "config": "base",
    "exceptions": "base",
    "typing": "base",
    "protocol": "protocol",
    "http": "http",
    "brokers": "brokers",
    "security": "security",
    "hub": "hub",
    "client": "client",
    "loadgen": "loadgen",
    "server": "server",
    "cli": "cli",
    "terminal": "cli",
    "__main__": "cli",
}

# Which layers each layer may import from (itself included).
ALLOWED = {
    "base": {"base"},
    "protocol": {"base", "protocol"},
    "http": {"base", "http", "protocol"},
    "brokers": {"base", "protocol", "http", "brokers"},
    # Auth, origins and rate limits: sans-I/O policy the hub and the server apply.
    "security": {"base", "protocol", "http", "security"},
    "hub": {"base", "protocol", "http", "brokers", "security", "hub"},
    # The Python client is protocol plus a connection: never the hub or the server.
    "client": {"base", "protocol", "client"},
    # The benchmark load generator: raw sockets of its own, nothing of wirehub.
    "loadgen": {"loadgen"},
    "server": {"base", "protocol", "http", "brokers", "security", "hub", "server"},
    "cli": {"base", "protocol", "http", "brokers", "security", "hub", "client", "server", "cli"}
    | {"root", "loadgen"},
    # ``import wirehub`` must not load the server or the CLI.
    "root": {"base", "protocol", "http", "brokers", "security", "hub", "client"},
}

# Function-local imports that go up a layer on purpose, each documented at its site.
EXCEPTIONS = {
    ("wirehub.hub.hub", "wirehub.server.serve"),  # Hub.run(): running needs the server
}


def module_name(path: Path) -> str:
    parts = ["wirehub", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    if parts[1] not in LAYER_OF:
        raise AssertionError(
            f"{module}: unknown part of wirehub; give {parts[1]!r} a layer in LAYER_OF"
        )
    return LAYER_OF[parts[1]]


def _exists(module: str) -> bool:
    """Whether ``module`` names a module or package in the source tree."""
    path = SRC.joinpath(*module.split(".")[1:])
    return path.is_dir() or path.with_suffix(".py").is_file()


class _Imports(ast.NodeVisitor):
    """Collects ``(imported module, line, inside a function?)`` for wirehub imports."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[tuple[str, int, bool]] = []
        self.depth = 0

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            # ``from wirehub.protocol import messages`` imports a submodule.
            submodule = f"{base}.{alias.name}"
            self._add(submodule if _exists(submodule) else base, node.lineno)

    def _add(self, name: str, line: int) -> None:
        if name == "wirehub" or name.startswith("wirehub."):
            self.found.append((name, line, self.depth > 0))


def imports_of(
    source: str, module: str, *, is_package: bool = False
) -> list[tuple[str, int, bool]]:
    visitor = _Imports(module, is_package)
    visitor.visit(ast.parse(source))
    return visitor.found


def violations(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Every import in ``source`` that points up a layer, as readable lines."""
    found = []
    own = layer(module)
    for imported, line, local in imports_of(source, module, is_package=is_package):
        target = "root" if imported == "wirehub" else layer(imported)
        if target in ALLOWED[own]:
            continue
        if local and (module, imported) in EXCEPTIONS:
            continue
        where = "function-local " if local else ""
        found.append(f"{module}:{line} ({own}) {where}imports {imported} ({target})")
    return found


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_imports_point_down(path: Path) -> None:
    """A module imports only from its own layer and the layers below it."""
    module = module_name(path)
    source = path.read_text()
    assert violations(source, module, is_package=path.name == "__init__.py") == []


def test_every_layer_has_modules() -> None:
    """The layer table names real packages, so a rename cannot silently skip the check."""
    present = {module_name(p).split(".")[1] for p in MODULES if module_name(p) != "wirehub"}
    assert {"codes", "config", "exceptions", "protocol", "http", "hub", "server", "cli"} <= present
    assert present <= set(LAYER_OF), present - set(LAYER_OF)


def test_documented_exception_is_still_function_local() -> None:
    """Hub.run's import of the server stays inside the function, where it is allowed."""
    source = (SRC / "hub" / "hub.py").read_text()
    found = imports_of(source, "wirehub.hub.hub")
    assert ("wirehub.server.serve", True) in {(name, local) for name, _, local in found}
    assert ("wirehub.server.serve", False) not in {(name, local) for name, _, local in found}


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("wirehub.protocol.websocket", "from wirehub.hub.hub import Hub"),
        ("wirehub.protocol.websocket", "import wirehub.server.serve"),
        ("wirehub.http.parser", "from wirehub.brokers import Broker"),
        ("wirehub.http.parser", "from ..hub import transport"),
        ("wirehub.hub.peer", "from wirehub.server.connection import Connection"),
        ("wirehub.hub.peer", "from wirehub import cli"),
        ("wirehub.hub.peer", "def f():\n    from wirehub.server.serve import run"),
        ("wirehub.config", "from wirehub.http.messages import Request"),
        ("wirehub.codes", "from wirehub import Hub"),
        ("wirehub.client.client", "from wirehub.hub.hub import Hub"),
        ("wirehub", "from wirehub.server.serve import Server"),
        (
            "wirehub.protocol.websocket",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from wirehub.hub import hub",
        ),
    ],
)
def test_checker_catches_upward_imports(module: str, source: str) -> None:
    """The checker itself flags imports that point up, relative and type-only ones included."""
    assert violations(source, module, is_package=module == "wirehub")


def test_checker_allows_downward_imports() -> None:
    """The checker lets a module import its own layer and lower ones."""
    source = (
        "from wirehub.codes import CloseCode\n"
        "from wirehub.protocol.websocket import Message\n"
        "from . import transport\n"
        "from wirehub.http import messages\n"
    )
    assert violations(source, "wirehub.hub.peer") == []
