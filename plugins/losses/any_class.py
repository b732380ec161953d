"""The any-class presence loss: an auxiliary term that learns whether *any* class is present.

For image i with targets y_i, the any-class logit is the weighted mean of its class logits,
``s_i = Σ_j w_ij z_ij / Σ_j w_ij``, with ``w_ij = 1`` for present classes, ``λ`` (``beta``)
for absent classes of a positive image, and 1 for every class of a negative image. Its
sigmoid is the normalised weighted geometric mean of the class probabilities. The term is
``α · ℓ(s_i, a_i)`` with ``a_i`` = "image has any label" and ℓ the base loss itself, so it
adds no parameters and works with every base loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mlcbench.errors import SpecError
from mlcbench.hookspecs import RegisterLoss, hookimpl


class AnyClassPresence(nn.Module):
    def __init__(self, weight: float, beta: float) -> None:
        super().__init__()
        self.weight = weight
        self.beta = beta

    def forward(
        self, logits: Tensor, targets: Tensor, elementwise: Callable[[Tensor, Tensor], Tensor]
    ) -> Tensor:
        """Per-image auxiliary loss (B,) for logits and 0/1 targets of shape (B, C)."""
        any_present, weights = self._presence_and_weights(targets)
        any_logit = (weights * logits).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True)
        return self.weight * elementwise(any_logit, any_present).squeeze(1)

    @property
    def column_weight(self) -> float:
        """How much the base loss at the any-class logit counts in an image's loss: α."""
        return self.weight

    def derive(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The any-class logit (B, 1) and target (B, 1) the base loss is evaluated on, and
        the Jacobian ``∂s_i/∂z_ij = w_ij / Σ_j w_ij`` (B, C) for :meth:`accumulate`."""
        any_present = targets.sum(dim=1, keepdim=True).clamp_max_(1.0)
        scaled = any_present * (1.0 - self.beta)
        # w = 1 − c (1 − y) = c y − c + 1 with c = (1 − λ) a; scalar and (B, 1) steps only.
        weights = torch.mul(targets, scaled).sub_(scaled).add_(1.0)
        jacobian = weights.div_(weights.sum(dim=1, keepdim=True))
        any_logit = torch.linalg.vecdot(jacobian, logits).unsqueeze(1)
        return any_logit, any_present, jacobian

    def accumulate(self, derivative: Tensor, jacobian: Tensor, gradient: Tensor) -> Tensor:
        """``gradient`` (B, C) plus ``α ℓ'(s_i) w_ij / Σ w``, from the base loss's derivative
        at the any-class logits (B, 1); a new, contiguous tensor."""
        return torch.addcmul(gradient, jacobian, derivative, value=self.weight)

    def _presence_and_weights(self, targets: Tensor) -> tuple[Tensor, Tensor]:
        """``a_i`` (B, 1) and ``w_ij`` (B, C): 1 for present classes, λ for absent classes of a
        positive image, 1 throughout a negative image. Arithmetic, not masks: no boolean
        indexing, so no host-device synchronisation."""
        any_present = targets.amax(dim=1, keepdim=True)
        # w = 1 − (1 − λ) a (1 − y) = (1 − c) + c y with c = (1 − λ) a, as one multiply-add.
        scaled = any_present * (1.0 - self.beta)
        return any_present, torch.addcmul(1.0 - scaled, scaled, targets)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, beta={self.beta}"


def any_class(*, weight: float = 1.0, beta: float = 0.1) -> nn.Module:
    """Any-class presence term: weight α of the term, beta λ of absent classes (0–1)."""
    if weight < 0:
        raise SpecError(f"any_class.weight: must be ≥ 0, got {weight}")
    if not 0.0 <= beta <= 1.0:
        raise SpecError(f"any_class.beta: must lie in [0, 1], got {beta}")
    return AnyClassPresence(weight, beta)


@hookimpl
def mlcbench_register_losses(register: RegisterLoss) -> None:
    register("any_class", any_class, role="auxiliary")
