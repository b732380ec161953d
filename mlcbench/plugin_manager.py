"""Discover plugins through the ``mlcbench`` entry-point group and build the registries.

Built-in plugins arrive by the very same route as third-party ones; this module imports
none of them by name.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from mlcbench import hookspecs
from mlcbench.errors import PluginError
from mlcbench.registry import Registry

ENTRY_POINT_GROUP = hookspecs.PROJECT


@dataclass(frozen=True)
class Provider:
    """Where a plugin came from: its entry point and the distribution that ships it."""

    plugin: str
    distribution: str
    version: str


@dataclass(frozen=True)
class PluginEntry:
    """One registered dataset, backbone or loss."""

    name: str
    factory: Callable[..., Any]
    provider: Provider
    #: For losses: ``base`` or ``auxiliary``.
    role: str = ""
    #: For a family (``timm/*``): lists the variant names it knows.
    variants: Callable[[], Iterable[str]] | None = None

    @property
    def summary(self) -> str:
        doc = (self.factory.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


@dataclass(frozen=True)
class LoadFailure:
    """A plugin that could not be imported or whose hook raised."""

    provider: Provider
    error: str

    def message(self) -> str:
        return (
            f"plugin {self.provider.plugin!r} from distribution {self.provider.distribution} "
            f"{self.provider.version} failed to load: {self.error}"
        )


@dataclass
class Plugins:
    """Everything the plugins registered."""

    datasets: Registry[PluginEntry] = field(default_factory=lambda: Registry("dataset"))
    backbones: Registry[PluginEntry] = field(default_factory=lambda: Registry("backbone"))
    losses: Registry[PluginEntry] = field(default_factory=lambda: Registry("loss"))
    providers: list[Provider] = field(default_factory=list)
    failures: list[LoadFailure] = field(default_factory=list)

    def distributions(self) -> dict[str, str]:
        """Distribution name → version of every plugin loaded: part of each cell's identity."""
        return {p.distribution: p.version for p in sorted(self.providers, key=lambda p: p.plugin)}


def load_plugins(extra: Iterable[tuple[ModuleType | object, Provider]] = ()) -> Plugins:
    """Import every ``mlcbench`` entry point (plus ``extra`` plugin objects) and register them.

    A plugin that fails to import or register is recorded in ``failures`` with its
    distribution and entry point; the others stay usable.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    plugins = Plugins()
    candidates: list[tuple[object, Provider]] = []
    for entry_point in sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name
    ):
        provider = _provider(entry_point)
        try:
            candidates.append((entry_point.load(), provider))
        except Exception as error:
            plugins.failures.append(LoadFailure(provider, _one_line(error)))
    candidates.extend(extra)
    for module, provider in candidates:
        if manager.is_registered(module):
            continue
        try:
            manager.register(module, name=provider.plugin)
        except Exception as error:  # a hookimpl that does not match its hookspec
            plugins.failures.append(LoadFailure(provider, _one_line(error)))
            continue
        try:
            _collect(manager, module, provider, plugins)
        except Exception as error:
            plugins.failures.append(LoadFailure(provider, _one_line(error)))
            continue
        plugins.providers.append(provider)
    return plugins


@functools.cache
def default_plugins() -> Plugins:
    """The installed plugins, loaded once per process."""
    return load_plugins()


def _collect(
    manager: pluggy.PluginManager, module: object, provider: Provider, plugins: Plugins
) -> None:
    """Call this one plugin's hooks with ``register`` callbacks that remember the provider."""

    def add(registry: Registry[PluginEntry], entry: PluginEntry) -> None:
        if not callable(entry.factory):
            raise PluginError(f"{registry.kind} {entry.name!r} was registered with a non-callable")
        registry.add(entry.name, entry)

    def register_dataset(name: str, factory: Callable[..., Any]) -> None:
        add(plugins.datasets, PluginEntry(name, factory, provider))

    def register_backbone(
        name: str,
        factory: Callable[..., Any],
        *,
        variants: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        add(plugins.backbones, PluginEntry(name, factory, provider, variants=variants))

    def register_loss(name: str, factory: Callable[..., Any], *, role: str) -> None:
        if role not in ("base", "auxiliary"):
            raise PluginError(f"loss {name!r}: role must be 'base' or 'auxiliary', got {role!r}")
        add(plugins.losses, PluginEntry(name, factory, provider, role))

    callbacks = {
        "mlcbench_register_datasets": register_dataset,
        "mlcbench_register_backbones": register_backbone,
        "mlcbench_register_losses": register_loss,
    }
    for hook_name, register in callbacks.items():
        hook = getattr(manager.hook, hook_name)
        for impl in hook.get_hookimpls():
            if impl.plugin is module:
                impl.function(register=register)


def _provider(entry_point: importlib.metadata.EntryPoint) -> Provider:
    dist = entry_point.dist
    if dist is None:
        return Provider(entry_point.name, "unknown", "unknown")
    return Provider(entry_point.name, dist.metadata["Name"], dist.version)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text}"
