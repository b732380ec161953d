"""Validation mAP as a torchmetrics ``Metric``, for Lightning validation loops.

A thin wrapper: batches are collected on the device, and ``compute`` hands the whole split to
the exact, tie-aware :func:`mlcbench.metrics.average_precision_per_class`. Its states are lists
reduced by concatenation (``dist_reduce_fx="cat"``), so under DDP every process computes mAP
over the images of all processes, not an average of per-process mAPs (which differs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from mlcbench.metrics import average_precision_per_class


class MultiLabelAveragePrecision(Metric):
    """Mean over classes of average precision, equal to scikit-learn's, over all processes.

    ``update(probabilities, labels)`` takes (B, C) probabilities in [0, 1] (apply a sigmoid to
    logits first) and (B, C) 0/1 labels. ``compute()`` returns the mean AP over the classes
    with a positive among all images seen (0.0 when no class has one), or with
    ``average=None`` the per-class APs, NaN for a class without a positive. When any
    probability seen is NaN or infinite (a diverged model), the result is NaN throughout.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    probabilities: list[Tensor]
    labels: list[Tensor]

    def __init__(self, average: str | None = "macro", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if average not in ("macro", None):
            raise ValueError(f"average must be 'macro' or None; got {average!r}")
        self.average = average
        self.add_state("probabilities", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, probabilities: Tensor, labels: Tensor) -> None:
        if probabilities.ndim != 2 or labels.shape != probabilities.shape:
            raise ValueError(
                "probabilities and labels must both have shape (batch, classes); got "
                f"{tuple(probabilities.shape)} and {tuple(labels.shape)}"
            )
        self.probabilities.append(probabilities.detach().float())
        # uint8 keeps the gathered state small and is supported by every backend's all-gather.
        self.labels.append(labels.detach().to(torch.uint8))

    def compute(self) -> Tensor:
        # After a distributed sync the states are already concatenated tensors.
        if isinstance(self.probabilities, list) and not self.probabilities:
            return torch.tensor(0.0 if self.average == "macro" else [], device=self.device)
        probabilities = dim_zero_cat(self.probabilities)
        labels = dim_zero_cat(self.labels)
        if not bool(torch.isfinite(probabilities).all()):
            # A diverged model: say so with NaN, for the caller to stop on, instead of raising.
            classes = probabilities.shape[-1]
            nan = torch.full((classes,) if self.average is None else (), float("nan"))
            return nan.to(dtype=torch.float64, device=self.device)
        per_class = average_precision_per_class(
            probabilities.double().cpu().numpy(), labels.cpu().numpy()
        )
        if self.average is None:
            return torch.from_numpy(per_class).to(self.device)
        present = per_class[~np.isnan(per_class)]
        mean_ap = float(present.mean()) if len(present) else 0.0
        return torch.tensor(mean_ap, dtype=torch.float64, device=self.device)
