"""Compose a base loss, auxiliary terms and class balancing into one training loss.

The batch loss of DESIGN §5: per-image ``L_i = Σ_j ℓ(z_ij, y_ij) + Σ_aux aux_i``, weighted by
the class-balancing image weight ``b_i`` and normalised by the number of positive labels
plus negative images in the batch. Everything runs on tensors, in float32, without
host-device synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from mlcbench.errors import PluginError, SpecError
from mlcbench.options import validate_options
from mlcbench.plugin_manager import Plugins, default_plugins
from mlcbench.spec import LossSpec, parse_loss


class ElementwiseLoss(Protocol):
    """A base loss: ``(logits, targets)`` of any shape → a loss tensor of the same shape."""

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor: ...


def effective_number_weights(counts: Tensor, beta: float) -> Tensor:
    """Class-balancing weights by effective number of samples, rescaled to sum to len(counts).

    ``v_k = (1 − β) / (1 − β^n_k)``; a count of zero gets the largest finite weight seen
    (nothing of it will be in a batch anyway, so it only keeps the rescaling finite).
    """
    counts = counts.to(torch.float64)
    if beta == 0.0:
        weights = torch.ones_like(counts)
    else:
        weights = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts))
        finite = torch.isfinite(weights)
        if not finite.all():
            fill = weights[finite].max() if finite.any() else torch.tensor(1.0, dtype=torch.float64)
            weights = torch.where(finite, weights, fill)
    return (weights * len(counts) / weights.sum()).to(torch.float32)


class CompositeLoss(nn.Module):
    """A base element-wise loss plus auxiliary terms, optionally class-balanced."""

    image_class_weights: Tensor
    negative_image_weight: Tensor

    def __init__(
        self,
        base: nn.Module,
        auxiliaries: Sequence[nn.Module] = (),
        *,
        class_counts: Sequence[float] | Tensor | None = None,
        negative_count: float | None = None,
        class_balance: float | None = None,
        name: str = "",
    ) -> None:
        super().__init__()
        self.base = base
        self.auxiliaries = nn.ModuleList(auxiliaries)
        self.name = name
        self.class_balance = class_balance
        if class_balance is None:
            class_weights = torch.ones(0)
            negative_weight = torch.ones(())
        else:
            if class_counts is None or negative_count is None:
                raise SpecError(
                    f"loss {name!r}: class balancing needs class_counts and negative_count "
                    "(or switch it off with class_balance: false)"
                )
            counts = torch.cat(
                [
                    torch.as_tensor(class_counts, dtype=torch.float64).flatten(),
                    torch.tensor([float(negative_count)], dtype=torch.float64),
                ]
            )
            if (counts < 0).any():
                raise SpecError(f"loss {name!r}: class counts must not be negative")
            weights = effective_number_weights(counts, class_balance)
            class_weights, negative_weight = weights[:-1], weights[-1]
        # Buffers move with .to(device) and are saved with the model.
        self.register_buffer("image_class_weights", class_weights)
        self.register_buffer("negative_image_weight", negative_weight)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        check_inputs(logits, targets, self.name)
        logits = logits.float()
        targets = targets.float()
        per_image = self.base(logits, targets).sum(dim=1)
        for term in self.auxiliaries:
            per_image = per_image + term(logits, targets, self.base)
        is_negative = (targets.amax(dim=1) == 0).float()
        if self.class_balance is None:
            image_weights = torch.ones_like(per_image)
        else:
            if self.image_class_weights.numel() != targets.shape[1]:
                raise SpecError(
                    f"loss {self.name!r}: built for {self.image_class_weights.numel()} classes, "
                    f"called with {targets.shape[1]}"
                )
            # Cast the buffers: the module may have been moved to float64 or bf16 with .to(),
            # and a product-sum instead of a matmul stays in float32 under autocast.
            class_weights = self.image_class_weights.to(targets.dtype)
            image_weights = (targets * class_weights).sum(dim=1)
            image_weights = image_weights + is_negative * self.negative_image_weight.to(
                targets.dtype
            )
        normaliser = targets.sum() + is_negative.sum()
        return (image_weights * per_image).sum() / normaliser


def check_inputs(logits: Tensor, targets: Tensor, name: str = "") -> None:
    """Reject shapes a multi-label loss cannot take. Shape checks cost no synchronisation."""
    if logits.ndim != 2 or logits.shape != targets.shape:
        raise SpecError(
            f"loss {name!r}: expected logits and targets of the same shape (batch, classes), "
            f"got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise SpecError(f"loss {name!r}: empty batch {tuple(logits.shape)}")


def build_loss(
    spec: LossSpec,
    plugins: Plugins,
    *,
    class_counts: Sequence[float] | Tensor | None,
    negative_count: float | None,
) -> CompositeLoss:
    """Instantiate a checked loss spec with the registered plugins."""
    resolved = resolve_loss(spec, plugins)
    modules = [plugins.losses.get(name).factory(**options) for name, options in resolved["parts"]]
    return CompositeLoss(
        modules[0],
        modules[1:],
        class_counts=class_counts,
        negative_count=negative_count,
        class_balance=spec.class_balance,
        name=spec.display_name,
    )


def resolve_loss(spec: LossSpec, plugins: Plugins) -> dict[str, Any]:
    """Check names, roles and options of every part; return them with defaults filled in."""
    parts = []
    for index, part in enumerate(spec.parts):
        where = spec.where or "loss"
        try:
            entry = plugins.losses.get(part.name)
        except PluginError as error:
            raise SpecError(f"{where}: {error}") from None
        wanted = "base" if index == 0 else "auxiliary"
        if entry.role != wanted:
            article = "an" if entry.role == "auxiliary" else "a"
            raise SpecError(
                f"{where}: {part.name!r} is {article} {entry.role} loss; write one base loss "
                "first, then auxiliary terms (e.g. 'focal+any_class')"
            )
        options = validate_options(entry.factory, part.options, f"{where}.{part.name}")
        try:
            # Losses are cheap to build: their factories' range checks run here, before any
            # cell trains, rather than when the first cell with this loss starts.
            entry.factory(**options)
        except (SpecError, ValueError) as error:
            raise SpecError(f"{where}: {error}") from None
        parts.append((part.name, options))
    return {"parts": parts, "class_balance": spec.class_balance}


def create_loss(
    spec: str | dict[str, Any],
    *,
    class_counts: Sequence[float] | Tensor | None = None,
    negative_count: float | None = None,
    plugins: Plugins | None = None,
) -> CompositeLoss:
    """Build a loss from a spec as written in YAML: ``"focal+any_class"`` or a mapping.

    ``class_counts`` (per class, training split) and ``negative_count`` (negative training
    images) feed class balancing, which is on by default; pass ``class_balance: false`` in a
    mapping to switch it off. Returns a module: ``loss(logits, targets)`` → scalar tensor.
    """
    return build_loss(
        parse_loss(spec),
        plugins or default_plugins(),
        class_counts=class_counts,
        negative_count=negative_count,
    )
