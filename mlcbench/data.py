"""What a dataset plugin hands the runner: splits of uint8 images with 0/1 labels.

Images stay uint8 until they reach the accelerator; the training module normalises and
augments whole batches there, so loader workers only move bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mlcbench.errors import PluginError

SPLITS = ("train", "val", "test")
AUGMENTATIONS = frozenset({"hflip", "color_jitter", "rotate5"})


class InMemoryImages(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images already decoded into one uint8 tensor (N, C, H, W), labels (N, K)."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise PluginError("InMemoryImages expects a uint8 tensor of shape (N, C, H, W).")
        if len(images) != len(labels):
            raise PluginError(f"InMemoryImages got {len(images)} images but {len(labels)} labels.")
        self.images = images
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


@dataclass(frozen=True)
class Split:
    """One split: stable image ids, their 0/1 labels and a torch dataset of the images.

    ``images[i]`` yields ``(uint8 tensor (C, H, W), float tensor (K,))`` for ``image_ids[i]``.
    """

    image_ids: Sequence[str]
    labels: np.ndarray
    images: Dataset[tuple[torch.Tensor, torch.Tensor]]

    @property
    def negatives(self) -> int:
        """Images that carry no label at all."""
        return int((self.labels.sum(axis=1) == 0).sum())

    def class_counts(self) -> np.ndarray:
        return self.labels.sum(axis=0).astype(np.int64)


@dataclass(frozen=True)
class MultiLabelDataset:
    """A dataset plugin's product: class names, normalisation, and the train/val/test splits."""

    name: str
    class_names: tuple[str, ...]
    splits: Mapping[str, Split]
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: Batch augmentations applied on the device during training (see ``AUGMENTATIONS``).
    augmentations: tuple[str, ...] = ()
    #: Class-importance weights (e.g. Sewer-ML's CIW), by class name, when the dataset defines them.
    class_weights: Mapping[str, float] | None = None
    #: True when every image already sits in memory, so extra loader workers only cost time.
    in_memory: bool = False
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise PluginError(f"Dataset {self.name!r} has no {', '.join(missing)} split.")
        for split_name, split in self.splits.items():
            labels = split.labels
            if labels.ndim != 2 or labels.shape[1] != len(self.class_names):
                raise PluginError(
                    f"Dataset {self.name!r}, split {split_name!r}: labels have shape "
                    f"{labels.shape}, expected (N, {len(self.class_names)})."
                )
            if len(split.image_ids) != len(labels):
                raise PluginError(
                    f"Dataset {self.name!r}, split {split_name!r}: {len(split.image_ids)} image "
                    f"ids for {len(labels)} label rows."
                )
            if not np.isin(labels, (0, 1)).all():
                raise PluginError(f"Dataset {self.name!r}, split {split_name!r}: labels not 0/1.")
        unknown = set(self.augmentations) - AUGMENTATIONS
        if unknown:
            raise PluginError(
                f"Dataset {self.name!r} asks for unknown augmentations {sorted(unknown)}; "
                f"known: {sorted(AUGMENTATIONS)}."
            )
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise PluginError(f"Dataset {self.name!r}: mean/std need one value per channel.")

    def manifest(self) -> dict[str, Any]:
        """Images, negatives and per-class counts for every split."""
        return {
            split_name: {
                "images": len(split.image_ids),
                "negatives": split.negatives,
                "class_counts": dict(
                    zip(self.class_names, (int(c) for c in split.class_counts()), strict=True)
                ),
            }
            for split_name, split in self.splits.items()
        }
