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
        self._targets_checked = False
        self._fused: bool | None = None
        self._column_weights: tuple[Any, Tensor] | None = None

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        check_inputs(logits, targets, self.name)
        if not self._targets_checked and targets.device.type != "meta":
            # The first batch only: a dataset's labels are checked when it is built, and a
            # check on every batch would cost a host-device synchronisation each time. Meta
            # tensors hold no values to check.
            check_binary_targets(targets, self.name)
            self._targets_checked = True
        # At least float32, whatever autocast says: 16-bit log-space terms lose too much.
        dtype = torch.promote_types(logits.dtype, torch.float32)
        if logits.dtype != dtype:
            logits = logits.to(dtype)
        if targets.dtype != dtype:
            targets = targets.to(dtype)
        device = logits.device.type
        if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
            with torch.autocast(device_type=device, enabled=False):
                return self._batch_loss(logits, targets)
        return self._batch_loss(logits, targets)

    @property
    def fused(self) -> bool:
        """True when every part gives its gradient in closed form: the base loss has
        ``value_and_grad``, every auxiliary term ``derive``, ``accumulate`` and
        ``column_weight``."""
        if self._fused is None:
            self._fused = callable(getattr(self.base, "value_and_grad", None)) and all(
                callable(getattr(term, "derive", None))
                and callable(getattr(term, "accumulate", None))
                and hasattr(term, "column_weight")
                for term in self.auxiliaries
            )
        return self._fused

    def _batch_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.fused:
            loss: Tensor = _FusedCompositeLoss.apply(logits, targets, self)
            return loss
        per_image = self.base(logits, targets).sum(dim=1)
        for term in self.auxiliaries:
            per_image = per_image + term(logits, targets, self.base)
        image_weights, normaliser = self.image_weights(targets)
        return (image_weights * per_image).sum() / normaliser

    def column_weights(self, classes: int, widths: Sequence[int], like: Tensor) -> Tensor:
        """How much each column of the fused values counts in an image's loss: 1 for each
        of the ``classes``, then each auxiliary term's ``column_weight`` for each of its
        ``widths`` columns. Built again only when the shape, device or a weight changes."""
        terms: list[Any] = list(self.auxiliaries)
        term_weights = tuple(float(term.column_weight) for term in terms)
        key = (classes, tuple(widths), term_weights, like.device, like.dtype)
        if self._column_weights is None or self._column_weights[0] != key:
            weights = [1.0] * classes
            for weight, width in zip(term_weights, widths, strict=True):
                weights += [weight] * width
            self._column_weights = (
                key,
                torch.tensor(weights, dtype=like.dtype, device=like.device),
            )
        return self._column_weights[1]

    def image_weights(self, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Class-balancing weight ``b_i`` of every image (ones when balancing is off) and the
        batch normaliser: positive labels plus negative images."""
        labels_per_image = targets.sum(dim=1)
        # A negative image counts once in the normaliser, a positive one once per label.
        normaliser = labels_per_image.clamp_min(1.0).sum()
        if self.class_balance is None:
            return torch.ones_like(labels_per_image), normaliser
        if self.image_class_weights.numel() != targets.shape[1]:
            raise SpecError(
                f"loss {self.name!r}: built for {self.image_class_weights.numel()} classes, "
                f"called with {targets.shape[1]}"
            )
        class_weights, negative_weight = self.image_class_weights, self.negative_image_weight
        if class_weights.dtype != targets.dtype:
            class_weights = class_weights.to(targets.dtype)
            negative_weight = negative_weight.to(targets.dtype)
        weights = torch.mv(targets, class_weights)
        return weights.masked_fill_(labels_per_image == 0, negative_weight), normaliser


class _FusedCompositeLoss(torch.autograd.Function):
    """The batch loss with its gradient in closed form: one pass, one saved tensor.

    ``∂loss/∂z_ij = b_i / N · (ℓ'(z_ij) + Σ_aux ∂aux_i/∂z_ij)``; each part supplies its
    own value and gradient, so autograd records a single node instead of dozens.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, composite: CompositeLoss) -> Tensor:
        # Modules hold these methods by the contract checked in CompositeLoss.fused.
        base: Any = composite.base
        terms: list[Any] = list(composite.auxiliaries)
        if terms:
            values, gradient, widths = _with_auxiliary_columns(logits, targets, base, terms)
            weights = composite.column_weights(logits.shape[1], widths, values)
            per_image = torch.mv(values, weights)
        else:
            values, gradient = base.value_and_grad(logits, targets)
            per_image = values.sum(dim=1)
        image_weights, normaliser = composite.image_weights(targets)
        scale = image_weights.div_(normaliser)
        ctx.save_for_backward(gradient.mul_(scale.unsqueeze(1)))
        return torch.dot(scale, per_image)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None, None]:
        (gradient,) = ctx.saved_tensors
        return grad_output * gradient, None, None


def _with_auxiliary_columns(
    logits: Tensor, targets: Tensor, base: Any, terms: list[Any]
) -> tuple[Tensor, Tensor, list[int]]:
    """One call of the element-wise base loss on the class logits and, as extra columns,
    every term's derived logits; the terms then add their chain rule to the class gradient.
    Returns the values (B, C + extra), the gradient by the class logits (B, C) and how many
    columns each term added."""
    derived = [term.derive(logits, targets) for term in terms]
    all_logits = torch.column_stack([logits, *(d[0] for d in derived)])
    all_targets = torch.column_stack([targets, *(d[1] for d in derived)])
    values, derivative = base.value_and_grad(all_logits, all_targets)
    start = logits.shape[1]
    # narrow, not [:, :C]: the same view at a fraction of the indexing cost.
    gradient = derivative.narrow(1, 0, start)
    widths = [d[0].shape[1] for d in derived]
    for term, width, (_, _, context) in zip(terms, widths, derived, strict=True):
        gradient = term.accumulate(derivative.narrow(1, start, width), context, gradient)
        start += width
    return values, gradient, widths


def check_binary_targets(targets: Tensor, name: str = "") -> None:
    """Multi-label targets are 0 or 1; anything else is a data bug, not a soft label."""
    # t² − t is 0 exactly for 0 and 1, and nonzero (or NaN) for every other value.
    if torch.mul(targets, targets).sub_(targets).any():
        bad = targets[(targets != 0) & (targets != 1)].flatten()[:3].tolist()
        raise SpecError(
            f"loss {name!r}: targets must be 0 or 1, got values such as {bad}; "
            "check the dataset's labels"
        )


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
