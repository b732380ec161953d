"""Expand a spec into cells (dataset × backbone × loss × seed), each with a stable id.

Expansion also resolves every plugin name and option against the registries, so every
mistake in a spec surfaces here, before anything trains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlcbench import __version__
from mlcbench.errors import PluginError, SpecError
from mlcbench.losses import resolve_loss
from mlcbench.options import unknown_key_error, validate_options
from mlcbench.plugin_manager import PluginEntry, Plugins
from mlcbench.registry import Registry
from mlcbench.spec import BenchmarkSpec, LossSpec, PluginSpec

ID_LENGTH = 12


@dataclass(frozen=True)
class ResolvedPlugin:
    """A plugin named in a spec, checked, with every option stated."""

    spec: PluginSpec
    entry: PluginEntry
    variant: str | None
    options: Mapping[str, Any]

    def config(self) -> dict[str, Any]:
        """Name and options as they identify the plugin: an option that came from a
        ``${VARIABLE}`` (a data folder, say) is stated as written, not as expanded here, and
        the plugin's runtime options (a dataset's ``cache``) are left out."""
        options = {
            name: self.spec.written.get(name, value)
            for name, value in self.options.items()
            if name not in self.entry.runtime_options
        }
        return {"name": self.spec.name, "options": options}

    @property
    def key(self) -> str:
        """Stable short id of this exact configuration (names a dataset's label folder)."""
        return stable_hash({**self.config(), "version": self.entry.provider.version})


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    id: str
    dataset: ResolvedPlugin
    backbone: ResolvedPlugin
    loss: LossSpec
    seed: int
    #: The canonical, fully resolved configuration the id is a hash of.
    config: Mapping[str, Any]

    def describe(self) -> str:
        return (
            f"{self.dataset.spec.display_name} · {self.backbone.spec.display_name} · "
            f"{self.loss.display_name} · seed {self.seed}"
        )


def stable_hash(value: Any) -> str:
    """Hash of a JSON-able value, independent of key order and machine."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:ID_LENGTH]


def resolve_plugin(spec: PluginSpec, registry: Registry[PluginEntry]) -> ResolvedPlugin:
    try:
        entry, variant = registry.lookup(spec.name)
    except PluginError as error:
        raise SpecError(f"{spec.where}: {error}") from None
    if variant is None and entry.name.endswith("/*"):
        family = entry.name.removesuffix("/*")
        raise SpecError(f"{spec.where}: {spec.name!r} names a family; write {family}/<model>")
    if variant is not None and entry.variants is not None:
        known = list(entry.variants())
        if variant not in known:
            family = entry.name.removesuffix("/*")
            raise unknown_key_error(variant, known, spec.where, f"{family} model")
    options = validate_options(
        entry.factory, spec.options, spec.where, skip=0 if variant is None else 1
    )
    return ResolvedPlugin(spec, entry, variant, options)


def expand(spec: BenchmarkSpec, plugins: Plugins) -> list[Cell]:
    """Every cell of the grid, in a stable order, with ids."""
    try:
        return _expand(spec, plugins)
    except SpecError as error:
        raise SpecError(f"{spec.source}: {error}") from None


def _expand(spec: BenchmarkSpec, plugins: Plugins) -> list[Cell]:
    datasets = [resolve_plugin(d, plugins.datasets) for d in spec.datasets]
    backbones = [resolve_plugin(b, plugins.backbones) for b in spec.backbones]
    losses = [(loss, resolve_loss(loss, plugins)) for loss in spec.losses]
    cells: list[Cell] = []
    seen: dict[str, str] = {}
    for dataset in datasets:
        for backbone in backbones:
            for loss, resolved_loss in losses:
                for seed in spec.seeds:
                    config = {
                        "dataset": dataset.config(),
                        "backbone": backbone.config(),
                        "loss": {"name": loss.name, **resolved_loss},
                        "seed": seed,
                        "train": spec.train.identity(),
                        "versions": _versions(dataset, backbone, loss, plugins),
                    }
                    cell_id = stable_hash(config)
                    where = f"{dataset.spec.where}, {backbone.spec.where}, {loss.where}"
                    if cell_id in seen:
                        raise SpecError(
                            f"{where}: same configuration as {seen[cell_id]}; "
                            "remove the repeated entry"
                        )
                    seen[cell_id] = where
                    cells.append(Cell(cell_id, dataset, backbone, loss, seed, config))
    return cells


def _versions(
    dataset: ResolvedPlugin, backbone: ResolvedPlugin, loss: LossSpec, plugins: Plugins
) -> dict[str, str]:
    providers = [dataset.entry.provider, backbone.entry.provider]
    providers += [plugins.losses.get(part.name).provider for part in loss.parts]
    versions = {p.distribution: p.version for p in providers}
    versions["mlcbench"] = __version__
    return dict(sorted(versions.items()))
