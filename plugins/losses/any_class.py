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
        any_present = targets.amax(dim=1, keepdim=True)
        # Arithmetic instead of masks: no boolean indexing, so no host-device sync.
        weights = any_present * (targets + self.beta * (1.0 - targets)) + (1.0 - any_present)
        any_logit = (weights * logits).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True)
        return self.weight * elementwise(any_logit, any_present).squeeze(1)

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
