"""The whole plugin contract of mlcbench, in one place.

A plugin is a module (or object) listed in the ``mlcbench`` entry-point group. It implements
any of the hooks below with ``@mlcbench.hookimpl``; each hook receives a ``register``
callback, so one plugin can add several datasets, backbones or losses. Factories take their
options as keyword arguments with type annotations: the runner validates a spec's options
against that signature before anything trains.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

import pluggy

PROJECT = "mlcbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

LossRole = Literal["base", "auxiliary"]


class RegisterDataset(Protocol):
    def __call__(
        self, name: str, factory: Callable[..., Any], *, runtime_options: Iterable[str] = ()
    ) -> None: ...


class RegisterBackbone(Protocol):
    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        variants: Callable[[], Iterable[str]] | None = None,
    ) -> None: ...


class RegisterLoss(Protocol):
    def __call__(self, name: str, factory: Callable[..., Any], *, role: LossRole) -> None: ...


@hookspec
def mlcbench_register_datasets(register: RegisterDataset) -> None:
    """Register dataset factories: ``register(name, factory, runtime_options=())``.

    ``factory(**options)`` returns a :class:`mlcbench.data.MultiLabelDataset` whose splits
    ``train``, ``val`` and ``test`` hold image ids, 0/1 labels and uint8 images.
    ``runtime_options`` names the options that change how fast the data loads, never what it
    holds (e.g. ``cache``): they stay out of cell ids, so switching one keeps every result.
    """


@hookspec
def mlcbench_register_backbones(register: RegisterBackbone) -> None:
    """Register backbone factories: ``register(name, factory)``.

    ``factory(*, num_classes, in_channels, **options)`` returns a ``torch.nn.Module`` mapping a
    float batch (B, in_channels, H, W) to logits (B, num_classes). A name ending in ``/*``
    registers a family (``timm/*``): the factory then receives the part after the slash as
    its first positional argument, and ``variants`` (a cheap callable listing the known
    variant names, imported lazily) lets a spec's typo fail before anything trains.
    """


@hookspec
def mlcbench_register_losses(register: RegisterLoss) -> None:
    """Register loss factories: ``register(name, factory, role="base" | "auxiliary")``.

    A *base* factory returns a module giving the element-wise loss ``(logits, targets) ->
    tensor of the same shape (B, C)``. An *auxiliary* factory returns a module called as
    ``term(logits, targets, elementwise)`` that gives a per-image loss (B,), computed with
    the base loss's element-wise function, so it composes with every base loss.
    """
