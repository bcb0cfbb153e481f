"""Imports point down the layers only (DESIGN.md): cli → server → hub → brokers → protocol/http.

Read from the source with ``ast``, so nothing is imported to check it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
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

# The package root is the composition root: it lends the hub the native server
# (``Hub.runner``, ``wirehub.serve``), naming it only inside functions and for
# type checking, so ``import wirehub`` never loads it (checked below, for real).
LAZY = {"root": {"server"}}


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
        self.depth = 0  # inside functions or ``if TYPE_CHECKING:``: not run at import

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if name != "TYPE_CHECKING":
            self.generic_visit(node)
            return
        self.depth += 1
        for child in node.body:
            self.visit(child)
        self.depth -= 1
        for child in node.orelse:
            self.visit(child)

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
        if local and target in LAZY.get(own, ()):
            continue
        where = "lazy " if local else ""
        found.append(f"{module}:{line} ({own}) {where}imports {imported} ({target})")
    return found


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_imports_point_down(path: Path) -> None:
    """A module imports only from its own layer and the layers below it."""
    module = module_name(path)
    source = path.read_text()
    assert violations(source, module, is_package=path.name == "__init__.py") == []


def module_graph() -> dict[str, set[str]]:
    """Each module's wirehub imports (type-only and function-local ones too)."""
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        module = module_name(path)
        found = imports_of(path.read_text(), module, is_package=path.name == "__init__.py")
        graph[module] = {imported for imported, _, _ in found if imported != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: each as a path that ends where it starts."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == 1:
                found.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_no_import_cycles() -> None:
    """No module imports itself through others, not even for type checking (DESIGN.md)."""
    assert cycles(module_graph()) == []


def test_cycle_check_finds_cycles() -> None:
    """The cycle check itself reports a loop, however long, and passes a tree."""
    loop = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(loop) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_every_layer_has_modules() -> None:
    """The layer table names real packages, so a rename cannot silently skip the check."""
    present = {module_name(p).split(".")[1] for p in MODULES if module_name(p) != "wirehub"}
    assert {"codes", "config", "exceptions", "protocol", "http", "hub", "server", "cli"} <= present
    assert present <= set(LAYER_OF), present - set(LAYER_OF)


def test_import_wirehub_loads_no_server() -> None:
    """``import wirehub`` loads neither the server nor the CLI."""
    code = (
        "import sys, wirehub\n"
        "loaded = [m for m in sys.modules if m.split('.')[:2] in (['wirehub', 'server'],"
        " ['wirehub', 'cli'])]\n"
        "assert not loaded, loaded\n"
        "assert wirehub.Hub.runner is not None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


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
        ("wirehub", "from wirehub import cli\ndef f():\n    from wirehub import cli"),
        (
            "wirehub.hub.hub",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import wirehub.server",
        ),
        (
            "wirehub.protocol.websocket",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from wirehub.hub import hub",
        ),
    ],
)
def test_checker_catches_upward_imports(module: str, source: str) -> None:
    """The checker itself flags imports that point up, relative and type-only ones included."""
    assert violations(source, module, is_package=module == "wirehub")


def test_checker_allows_the_root_to_name_the_server_lazily() -> None:
    """The package root may name the server in a function or for type checking, nothing else."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from wirehub.server.serve import Server\n"
        "def serve():\n    from wirehub.server.serve import serve\n"
    )
    assert violations(source, "wirehub", is_package=True) == []


def test_checker_allows_downward_imports() -> None:
    """The checker lets a module import its own layer and lower ones."""
    source = (
        "from wirehub.codes import CloseCode\n"
        "from wirehub.protocol.websocket import Message\n"
        "from . import transport\n"
        "from wirehub.http import messages\n"
    )
    assert violations(source, "wirehub.hub.peer") == []
