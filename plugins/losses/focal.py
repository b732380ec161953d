"""Focal loss, element-wise (Lin et al., 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlcbench.errors import SpecError
from mlcbench.hookspecs import RegisterLoss, hookimpl


class FocalLoss(nn.Module):
    """``(1 − p_t)^γ · BCE``, with optional α-balancing of positives against negatives."""

    def __init__(self, gamma: float, alpha: float | None) -> None:
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        # 1 − p_t from log-space, so it stays exact for saturated logits.
        prob_true = torch.exp(-cross_entropy)
        loss = (1.0 - prob_true).clamp_min(0.0).pow(self.gamma) * cross_entropy
        if self.alpha is not None:
            loss = loss * (self.alpha * targets + (1.0 - self.alpha) * (1.0 - targets))
        return loss

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}"


def focal(*, gamma: float = 2.0, alpha: float | None = None) -> nn.Module:
    """Focal loss: down-weights easy examples by (1 − p_t)^gamma; optional alpha-balancing."""
    if gamma < 0:
        raise SpecError(f"focal.gamma: must be ≥ 0, got {gamma}")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise SpecError(f"focal.alpha: must lie in [0, 1] (or be null), got {alpha}")
    return FocalLoss(gamma, alpha)


@hookimpl
def mlcbench_register_losses(register: RegisterLoss) -> None:
    register("focal", focal, role="base")
