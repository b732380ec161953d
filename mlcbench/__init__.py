"""mlcbench: a plugin-based benchmark suite for multi-label classification with abundant
negative data.

Heavy modules (torch, Lightning) load on first use of the names that need them, so
``import mlcbench`` and ``mlcbench --help`` stay instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlcbench.errors import MlcbenchError, PluginError, SpecError
from mlcbench.hookspecs import hookimpl

if TYPE_CHECKING:
    from mlcbench.losses import create_loss
    from mlcbench.plugin_manager import load_plugins
    from mlcbench.spec import load_spec

__version__ = "0.1.0"

__all__ = [
    "MlcbenchError",
    "PluginError",
    "SpecError",
    "__version__",
    "create_loss",
    "hookimpl",
    "load_plugins",
    "load_spec",
]

_LAZY = {
    "create_loss": "mlcbench.losses",
    "load_plugins": "mlcbench.plugin_manager",
    "load_spec": "mlcbench.spec",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlcbench' has no attribute {name!r}")
