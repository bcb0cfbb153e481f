"""Loading the example apps (examples/ is not a package) for their browser tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def load_example(name: str) -> ModuleType:
    """``examples/<name>/app.py`` as a module, imported once per session."""
    module_name = f"{name}_example_app"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(
            module_name, ROOT / "examples" / name / "app.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # msgspec resolves the Structs' annotations here
        spec.loader.exec_module(module)
    return module
