"""Binary cross-entropy, element-wise: the standard multi-label base loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlcbench.hookspecs import RegisterLoss, hookimpl


class BinaryCrossEntropy(nn.Module):
    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")

    def value_and_grad(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Element-wise loss and its derivative by the logit, ``σ(z) − y``."""
        values = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return values, torch.sigmoid(logits).sub_(targets)


def bce() -> nn.Module:
    """Binary cross-entropy on logits (numerically stable)."""
    return BinaryCrossEntropy()


@hookimpl
def mlcbench_register_losses(register: RegisterLoss) -> None:
    register("bce", bce, role="base")
