"""Asymmetric loss, element-wise (Ridnik et al., 2021, "Asymmetric Loss For Multi-Label
Classification")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlcbench.errors import SpecError
from mlcbench.hookspecs import RegisterLoss, hookimpl


class AsymmetricLoss(nn.Module):
    """Separate focusing for positives and negatives, and a probability margin for negatives.

    Positives: ``−(1 − p)^γ+ · log p``. Negatives: ``−p_m^γ− · log(1 − p_m)`` with the shifted
    probability ``p_m = max(p − clip, 0)``, which discards very easy negatives entirely.
    Everything is computed from logits in log space, so ±100 stays finite.
    """

    def __init__(self, gamma_neg: float, gamma_pos: float, clip: float) -> None:
        super().__init__()
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        positive = F.softplus(-logits)  # −log p
        if self.gamma_pos != 0.0:
            positive = torch.exp(self.gamma_pos * F.logsigmoid(-logits)) * positive
        if self.clip > 0.0:
            shifted = (torch.sigmoid(logits) - self.clip).clamp_min(0.0)
            # 1 − p_m ≥ clip, so the log never sees 0.
            negative = -torch.log1p(-shifted)
            if self.gamma_neg != 0.0:
                # Through log of a clamped value, so γ− < 1 keeps a finite gradient at p_m = 0.
                tiny = torch.finfo(shifted.dtype).tiny
                negative = torch.exp(self.gamma_neg * torch.log(shifted.clamp_min(tiny))) * negative
        else:
            negative = F.softplus(logits)  # −log(1 − p)
            if self.gamma_neg != 0.0:
                negative = torch.exp(self.gamma_neg * F.logsigmoid(logits)) * negative
        return targets * positive + (1.0 - targets) * negative

    def extra_repr(self) -> str:
        return f"gamma_neg={self.gamma_neg}, gamma_pos={self.gamma_pos}, clip={self.clip}"


def asl(*, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05) -> nn.Module:
    """Asymmetric loss: focusing gamma_neg / gamma_pos and a probability margin (clip)."""
    for option, value in (("gamma_neg", gamma_neg), ("gamma_pos", gamma_pos)):
        if value < 0:
            raise SpecError(f"asl.{option}: must be ≥ 0, got {value}")
    if not 0.0 <= clip < 1.0:
        raise SpecError(f"asl.clip: must lie in [0, 1), got {clip}")
    return AsymmetricLoss(gamma_neg, gamma_pos, clip)


@hookimpl
def mlcbench_register_losses(register: RegisterLoss) -> None:
    register("asl", asl, role="base")
