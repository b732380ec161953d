"""Discover plugins through the ``mlcbench`` entry-point group and build the registries.

Built-in plugins arrive by the very same route as third-party ones; this module imports
none of them by name.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from mlcbench import hookspecs
from mlcbench.errors import PluginError
from mlcbench.registry import Registry

ENTRY_POINT_GROUP = hookspecs.PROJECT
BUILTIN_DISTRIBUTION = "mlcbench"


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
    #: For datasets: options that change speed, not data; never part of a cell id.
    runtime_options: frozenset[str] = frozenset()

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
    #: Installed plugins left out by ``-p no:NAME`` or with autoloading off.
    blocked: list[Provider] = field(default_factory=list)

    def registry(self, kind: str) -> Registry[PluginEntry]:
        """The registry of ``dataset``, ``backbone`` or ``loss`` plugins."""
        return {"dataset": self.datasets, "backbone": self.backbones, "loss": self.losses}[kind]

    def distributions(self) -> dict[str, str]:
        """Distribution name → version of every plugin loaded: part of each cell's identity."""
        return {p.distribution: p.version for p in sorted(self.providers, key=lambda p: p.plugin)}


AUTOLOAD_OFF_VARIABLE = "MLCBENCH_DISABLE_PLUGIN_AUTOLOAD"


@dataclass(frozen=True)
class PluginSelection:
    """Which plugin distributions to load, as pytest's ``-p NAME`` / ``-p no:NAME``.

    Names match a distribution (``mlcbench-poly1``; ``-``, ``_`` and case ignored) or an
    entry point (``poly1``).
    """

    #: Load these even when autoloading is off.
    enable: tuple[str, ...] = ()
    #: Never load these.
    block: tuple[str, ...] = ()
    #: Load every installed plugin (False: only those in ``enable``).
    autoload: bool = True

    @classmethod
    def from_options(cls, options: Iterable[str]) -> PluginSelection:
        """From ``-p`` values and the MLCBENCH_DISABLE_PLUGIN_AUTOLOAD environment variable."""
        values = list(options)
        return cls(
            enable=tuple(v for v in values if not v.startswith("no:")),
            block=tuple(v.removeprefix("no:") for v in values if v.startswith("no:")),
            autoload=os.environ.get(AUTOLOAD_OFF_VARIABLE, "") in ("", "0"),
        )

    def decide(self, provider: Provider) -> bool:
        """True when ``provider``'s plugin is to be loaded."""
        if any(_matches(name, provider) for name in self.block):
            return False
        return self.autoload or any(_matches(name, provider) for name in self.enable)


def _matches(name: str, provider: Provider) -> bool:
    def normal(text: str) -> str:
        return text.lower().replace("_", "-")

    return normal(name) in (normal(provider.distribution), normal(provider.plugin))


def load_plugins(
    extra: Iterable[tuple[ModuleType | object, Provider]] = (),
    selection: PluginSelection = PluginSelection(),
) -> Plugins:
    """Import every selected ``mlcbench`` entry point (plus ``extra`` plugin objects) and
    register them.

    A plugin that fails to import or register is recorded in ``failures`` with its
    distribution and entry point; the others stay usable. Plugins left out by ``selection``
    are listed in ``blocked``.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    plugins = Plugins()
    candidates: list[tuple[object, Provider]] = []
    entry_points = [
        (ep, _provider(ep)) for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    ]
    # mlcbench's own plugins first, so a third party cannot take a built-in's name.
    entry_points.sort(key=lambda pair: (pair[1].distribution != BUILTIN_DISTRIBUTION, pair[0].name))
    for entry_point, provider in entry_points:
        if not selection.decide(provider):
            plugins.blocked.append(provider)
            continue
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
            # A misspelt hook (mlcbench_register_loss) would otherwise be ignored silently.
            manager.check_pending()
        except Exception as error:  # a hookimpl that does not match its hookspec
            if manager.is_registered(module):
                manager.unregister(module)
            plugins.failures.append(LoadFailure(provider, _one_line(error)))
            continue
        try:
            staged = _collect(manager, module, provider)
            for kind, entry in staged:
                plugins.registry(kind).check_new(entry.name)
        except Exception as error:
            plugins.failures.append(LoadFailure(provider, _one_line(error)))
            continue
        # All or nothing: a plugin that failed half-way registers none of its entries.
        for kind, entry in staged:
            plugins.registry(kind).add(entry.name, entry)
        plugins.providers.append(provider)
    return plugins


_selection = PluginSelection()


def select_plugins(selection: PluginSelection) -> None:
    """Set which plugins :func:`default_plugins` loads (the CLI's ``-p`` options)."""
    global _selection
    _selection = selection
    default_plugins.cache_clear()


@functools.cache
def default_plugins() -> Plugins:
    """The selected installed plugins, loaded once per process."""
    return load_plugins(selection=_selection)


def _collect(
    manager: pluggy.PluginManager, module: object, provider: Provider
) -> list[tuple[str, PluginEntry]]:
    """Call this one plugin's hooks; return what it registered, by kind."""
    staged: list[tuple[str, PluginEntry]] = []

    def add(kind: str, entry: PluginEntry) -> None:
        if not callable(entry.factory):
            raise PluginError(f"{kind} {entry.name!r} was registered with a non-callable")
        if any(k == kind and e.name == entry.name for k, e in staged):
            raise PluginError(f"registers {entry.name!r} twice")
        staged.append((kind, entry))

    def register_dataset(
        name: str, factory: Callable[..., Any], *, runtime_options: Iterable[str] = ()
    ) -> None:
        runtime = frozenset(runtime_options)
        accepted = set(inspect.signature(factory).parameters) if callable(factory) else set()
        if not runtime <= accepted:
            raise PluginError(
                f"dataset {name!r}: runtime_options {sorted(runtime - accepted)} are not "
                "options of its factory"
            )
        add("dataset", PluginEntry(name, factory, provider, runtime_options=runtime))

    def register_backbone(
        name: str,
        factory: Callable[..., Any],
        *,
        variants: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        add("backbone", PluginEntry(name, factory, provider, variants=variants))

    def register_loss(name: str, factory: Callable[..., Any], *, role: str) -> None:
        if role not in ("base", "auxiliary"):
            raise PluginError(f"loss {name!r}: role must be 'base' or 'auxiliary', got {role!r}")
        add("loss", PluginEntry(name, factory, provider, role))

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
    return staged


def _provider(entry_point: importlib.metadata.EntryPoint) -> Provider:
    dist = entry_point.dist
    if dist is None:
        return Provider(entry_point.name, "unknown", "unknown")
    return Provider(entry_point.name, dist.metadata["Name"], dist.version)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text}"
