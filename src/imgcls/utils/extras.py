"""The optional extras of pyproject.toml, checked where a feature needs one.

The core install (no extras) trains, evaluates and predicts; `serve`, ONNX `export` and
`tune` need packages of their extra. Without them the user gets one line naming the pip
command, not a traceback from deep inside an import.
"""

from __future__ import annotations

import importlib

from imgcls.errors import UserError


def require(feature: str, extra: str, *modules: str) -> None:
    """Import each of `modules`; those missing are a UserError naming `imgcls[extra]`."""
    missing = [name for name in modules if not _importable(name)]
    if missing:
        raise UserError(f"{feature} needs {', '.join(missing)}: "
                        f"pip install 'imgcls[{extra}]'")


def available(*modules: str) -> bool:
    """Whether every one of `modules` imports (an optional step runs only then)."""
    return all(_importable(name) for name in modules)


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
