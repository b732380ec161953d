"""Poly-1 loss for multi-label classification, as a third-party mlcbench plugin.

Leng et al., 2022, "PolyLoss: A Polynomial Expansion Perspective of Classification Loss
Functions" (ICLR): cross-entropy is ``Σ_k (1 − p_t)^k / k``; Poly-1 adds ``ε`` to the
first-order coefficient. For each class of a multi-label problem, with ``p_t`` the
probability of the true label:

    ℓ(z, y) = BCE(z, y) + ε · (1 − p_t),   p_t = exp(−BCE(z, y))

This module uses only mlcbench's public plugin contract: ``mlcbench.hookimpl``,
``mlcbench.SpecError`` and the element-wise base-loss contract of
``mlcbench_register_losses``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import mlcbench

if TYPE_CHECKING:
    from mlcbench.hookspecs import RegisterLoss


class Poly1Loss(nn.Module):
    """Element-wise Poly-1: ``BCE + ε (1 − p_t)`` from logits."""

    def __init__(self, epsilon: float) -> None:
        super().__init__()
        self.epsilon = epsilon

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        # 1 − p_t from the log-space BCE: exact for saturated logits, where 1 − sigmoid(z)
        # would round to 0 or 1; expm1 keeps it accurate when p_t is close to 1.
        return cross_entropy - self.epsilon * torch.expm1(-cross_entropy)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"


def poly1(*, epsilon: float = 1.0) -> nn.Module:
    """Poly-1 loss (Leng et al., 2022): BCE + epsilon · (1 − p_t); epsilon ≥ −1."""
    # BCE = −log p_t ≥ 1 − p_t, so ε ≥ −1 keeps every element ≥ 0. Below −1 the loss turns
    # negative and is smallest at p_t = −1/ε < 1: it would push right answers away from
    # confidence instead of towards it.
    if not (math.isfinite(epsilon) and epsilon >= -1.0):
        raise mlcbench.SpecError(
            f"poly1.epsilon: must be a finite number ≥ -1 (1 is the paper's default), got {epsilon}"
        )
    return Poly1Loss(epsilon)


@mlcbench.hookimpl
def mlcbench_register_losses(register: RegisterLoss) -> None:
    register("poly1", poly1, role="base")
