"""The dataset contract rejects malformed plugin output with a message naming the dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlcbench.data import InMemoryImages, MultiLabelDataset, Split
from mlcbench.errors import PluginError


def split(labels: list[list[int]], ids: list[str] | None = None) -> Split:
    array = np.array(labels, dtype=np.uint8)
    images = InMemoryImages(torch.zeros(len(array), 1, 4, 4, dtype=torch.uint8), array)
    return Split(ids or [f"i{k}" for k in range(len(array))], array, images)


def dataset(**overrides: object) -> MultiLabelDataset:
    good = split([[1, 0], [0, 0], [0, 0]])
    fields: dict[str, object] = {
        "name": "toy",
        "class_names": ("a", "b"),
        "splits": {"train": good, "val": good, "test": good},
        "in_channels": 1,
        "image_size": 4,
        "mean": (0.5,),
        "std": (0.2,),
    }
    fields.update(overrides)
    return MultiLabelDataset(**fields)  # type: ignore[arg-type]


def test_manifest_counts_images_negatives_and_classes_per_split() -> None:
    manifest = dataset().manifest()
    assert manifest["train"] == {"images": 3, "negatives": 2, "class_counts": {"a": 1, "b": 0}}
    assert set(manifest) == {"train", "val", "test"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"splits": {"train": split([[0, 0]])}}, "has no val, test split"),
        ({"class_names": ("a", "b", "c")}, "expected \\(N, 3\\)"),
        ({"augmentations": ("mixup",)}, "unknown augmentations \\['mixup'\\]"),
        ({"mean": (0.5, 0.5)}, "one value per channel"),
    ],
)
def test_malformed_datasets_are_rejected(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(PluginError, match=f"Dataset 'toy'.*{message}|{message}"):
        dataset(**overrides)


def test_labels_must_be_binary_and_ids_must_match_rows() -> None:
    bad = split([[2, 0]])
    with pytest.raises(PluginError, match="labels not 0/1"):
        dataset(splits={"train": bad, "val": bad, "test": bad})
    short = Split(["only"], np.zeros((2, 2), np.uint8), split([[0, 0], [0, 0]]).images)
    with pytest.raises(PluginError, match="1 image ids for 2 label rows"):
        dataset(splits={"train": short, "val": short, "test": short})


def test_in_memory_images_yield_uint8_image_and_float_labels() -> None:
    images, labels = split([[1, 0]]).images[0]
    assert images.dtype == torch.uint8 and images.shape == (1, 4, 4)
    assert labels.dtype == torch.float32 and labels.tolist() == [1.0, 0.0]
    with pytest.raises(PluginError, match="uint8 tensor"):
        InMemoryImages(torch.zeros(1, 1, 2, 2), np.zeros((1, 1)))
