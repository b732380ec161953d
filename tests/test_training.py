"""The Lightning module's pieces, without a Trainer: schedule, augmentation, runtime."""

from __future__ import annotations

import math

import pytest
import torch

from mlcbench.data import InMemoryImages, MultiLabelDataset, Split
from mlcbench.spec import TrainConfig
from mlcbench.training import (
    WARMUP_START_FACTOR,
    MultiLabelModule,
    augment,
    learning_rate_factor,
    resolve_runtime,
)


def tiny_dataset(in_memory: bool) -> MultiLabelDataset:
    import numpy as np

    labels = np.array([[0, 1], [0, 0], [1, 0]], dtype=np.uint8)
    images = InMemoryImages(torch.zeros(3, 1, 8, 8, dtype=torch.uint8), labels)
    split = Split([f"i{k}" for k in range(3)], labels, images)
    return MultiLabelDataset(
        name="tiny",
        class_names=("a", "b"),
        splits={"train": split, "val": split, "test": split},
        in_channels=1,
        image_size=8,
        mean=(0.5,),
        std=(0.25,),
        in_memory=in_memory,
    )


def test_schedule_warms_up_linearly_then_follows_a_cosine_to_min_lr() -> None:
    config = TrainConfig(epochs=10, lr=1e-3, min_lr=1e-5, warmup_epochs=2)
    factor = learning_rate_factor(config, steps_per_epoch=10)
    assert factor(0) == pytest.approx(WARMUP_START_FACTOR)
    assert factor(10) == pytest.approx(WARMUP_START_FACTOR + (1 - WARMUP_START_FACTOR) / 2)
    assert factor(20) == pytest.approx(1.0)
    halfway = 20 + 40
    assert factor(halfway) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert factor(100) == pytest.approx(0.01)
    assert factor(500) == pytest.approx(0.01)


def test_constant_schedule_stays_at_lr_after_warm_up() -> None:
    factor = learning_rate_factor(TrainConfig(scheduler="constant", warmup_epochs=1), 4)
    assert [factor(s) for s in (4, 10, 40)] == [1.0, 1.0, 1.0]


def test_augmentations_keep_shape_and_flip_only_horizontally() -> None:
    torch.manual_seed(0)
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    flipped = augment(images, ["hflip"])
    for original, result in zip(images, flipped, strict=True):
        assert torch.equal(result, original) or torch.equal(result, original.flip(-1))
    assert augment(images, ["color_jitter", "rotate5"]).shape == images.shape
    assert augment(images, []) is images


def test_module_normalises_uint8_images_with_the_dataset_statistics() -> None:
    module = MultiLabelModule(
        torch.nn.Flatten(), torch.nn.Identity(), TrainConfig(), mean=(0.5,), std=(0.25,)
    )
    images = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    assert torch.allclose(module.normalise(images), torch.full((1, 1, 2, 2), 2.0))


def test_cpu_runtime_uses_32_bit_and_no_workers_for_in_memory_data() -> None:
    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback")
    runtime = resolve_runtime(TrainConfig(), tiny_dataset(in_memory=True))
    assert (runtime.accelerator, runtime.precision, runtime.num_workers) == ("cpu", "32-true", 0)
    assert runtime.pin_memory is False
    on_disk = resolve_runtime(TrainConfig(), tiny_dataset(in_memory=False))
    assert on_disk.num_workers >= 1
    explicit = resolve_runtime(
        TrainConfig(num_workers=3, precision="bf16-mixed"), tiny_dataset(True)
    )
    assert (explicit.num_workers, explicit.precision) == (3, "bf16-mixed")
