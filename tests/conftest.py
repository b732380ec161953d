"""Shared fixtures: the installed plugins, the quickstart spec, and spec files on disk."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlcbench.plugin_manager import Plugins, load_plugins

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "benchmarks" / "quickstart.yaml"

#: The smallest spec that expands: one cell.
MINIMAL_SPEC: dict[str, Any] = {
    "name": "minimal",
    "datasets": ["negdigits"],
    "backbones": ["smallcnn"],
    "losses": ["bce"],
}


@pytest.fixture(scope="session")
def plugins() -> Plugins:
    """The installed plugins (built-ins through their entry points), loaded once."""
    loaded = load_plugins()
    assert not loaded.failures, [failure.message() for failure in loaded.failures]
    return loaded


@pytest.fixture
def quickstart_path() -> Path:
    return QUICKSTART


@pytest.fixture
def quickstart_raw() -> dict[str, Any]:
    """The quickstart spec as parsed YAML, a fresh copy per test."""
    raw = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    assert isinstance(raw, dict)
    return raw


@pytest.fixture
def minimal_raw() -> dict[str, Any]:
    return copy.deepcopy(MINIMAL_SPEC)


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write YAML text to ``tmp_path/<name>`` and return the path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
