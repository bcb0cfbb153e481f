"""The public API is deliberate: the root exports are pinned, and every module has ``__all__``."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
from pathlib import Path

import pytest

import wirehub

SRC = Path(wirehub.__file__).parent

ROOT_EXPORTS = {
    "AsyncEmitter",
    "Broker",
    "CallError",
    "CallTimeout",
    "Client",
    "CloseCode",
    "ConfigError",
    "ConnectionClosed",
    "DisconnectReason",
    "Emitter",
    "ErrorCode",
    "EventError",
    "HandshakeError",
    "Hub",
    "Limits",
    "MemoryBroker",
    "Peer",
    "Reject",
    "Request",
    "Response",
    "SyncClient",
    "Timeouts",
    "WebSocket",
    "WirehubError",
    "broadcast",
    "connect",
    "serve",
}


def module_name(path: Path) -> str:
    parts = ["wirehub", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def binds_public_names(path: Path) -> bool:
    """Whether a module defines, assigns or imports any name not starting with '_'."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [(a.asname or a.name).split(".")[0] for a in node.names]
            names = [n for n in names if n != "annotations"]  # from __future__
        else:
            continue
        if any(not name.startswith("_") for name in names):
            return True
    return False


# Modules run as scripts, or holding only a docstring, have nothing to export.
MODULES = sorted(p for p in SRC.rglob("*.py") if p.name != "__main__.py" and binds_public_names(p))


def test_root_exports_are_pinned() -> None:
    """``wirehub.__all__`` is exactly the curated list: adding or removing a name is deliberate."""
    assert len(wirehub.__all__) == len(set(wirehub.__all__)), "duplicates in wirehub.__all__"
    assert set(wirehub.__all__) == ROOT_EXPORTS


def test_root_exports_exist() -> None:
    """Every name in ``wirehub.__all__`` is importable from ``wirehub``."""
    for name in wirehub.__all__:
        assert getattr(wirehub, name, None) is not None, name


def test_version_matches_metadata() -> None:
    """``wirehub.__version__`` is the installed distribution's version."""
    assert wirehub.__version__ == importlib.metadata.version("wirehub")


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_every_module_has_all(path: Path) -> None:
    """Each module declares ``__all__``, and every name in it exists."""
    module = importlib.import_module(module_name(path))
    assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"
    assert isinstance(module.__all__, list | tuple)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_docstring_only_packages_are_the_exemption() -> None:
    """Only subpackage markers holding a docstring are exempt from ``__all__``."""
    exempt = {
        module_name(p)
        for p in SRC.rglob("*.py")
        if p.name != "__main__.py" and not binds_public_names(p)
    }
    assert all(name.count(".") == 1 for name in exempt), exempt
    for name in exempt:
        assert (SRC / name.split(".")[1] / "__init__.py").is_file(), name
