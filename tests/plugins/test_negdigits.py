"""The embedded default dataset: deterministic, leak-free and labelled by what it shows."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlcbench_plugins.datasets import negdigits as nd

from mlcbench.data import SPLITS, MultiLabelDataset
from mlcbench.errors import SpecError

SMALL: dict[str, Any] = {"train_images": 300, "val_images": 120, "test_images": 100}


def scene_options(**overrides: Any) -> dict[str, Any]:
    """Every option of ``generate_scenes``: the factory's defaults, small splits, overrides."""
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(nd.negdigits).parameters.items()
    }
    return {**defaults, **SMALL, **overrides}


def test_registers_negdigits_through_the_hook() -> None:
    registered: list[tuple[str, Callable[..., Any]]] = []
    nd.mlcbench_register_datasets(register=lambda name, factory: registered.append((name, factory)))
    assert registered == [("negdigits", nd.negdigits)]


def test_options_are_keyword_only_annotated_and_defaulted() -> None:
    for name, parameter in inspect.signature(nd.negdigits).parameters.items():
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert parameter.default is not inspect.Parameter.empty, name
        assert parameter.annotation is not inspect.Parameter.empty, name
        assert name in (nd.negdigits.__doc__ or ""), f"option {name} is not documented"


def test_default_dataset_shapes_dtypes_and_normalisation() -> None:
    dataset = nd.negdigits()
    assert isinstance(dataset, MultiLabelDataset)
    assert dataset.class_names == ("digit_0", "digit_1", "digit_2", "digit_3", "digit_4")
    assert (dataset.in_channels, dataset.image_size, dataset.in_memory) == (1, 32, True)
    pixels = []
    for split_name in SPLITS:
        split = dataset.splits[split_name]
        images = split.images.images  # type: ignore[attr-defined]
        n = len(split.image_ids)
        assert images.dtype == torch.uint8
        assert images.shape == (n, 1, 32, 32)
        assert split.labels.dtype == np.uint8
        assert split.labels.shape == (n, 5)
        assert split.image_ids[0] == f"{split_name}_000000"
        assert len(set(split.image_ids)) == n
        image, label = split.images[n - 1]
        assert torch.equal(image, images[n - 1])
        assert torch.equal(label, torch.as_tensor(split.labels[n - 1], dtype=torch.float32))
        pixels.append(images.double() / 255)
    everything = torch.cat(pixels)
    # The fixed constants stay representative of what the defaults generate.
    assert everything.mean().item() == pytest.approx(dataset.mean[0], abs=0.01)
    assert everything.std().item() == pytest.approx(dataset.std[0], abs=0.01)


def test_same_seed_gives_identical_data_and_another_seed_differs() -> None:
    first, again, other = (nd.negdigits(seed=s, **SMALL) for s in (3, 3, 4))
    for split_name in SPLITS:
        a, b, c = (d.splits[split_name] for d in (first, again, other))
        assert torch.equal(a.images.images, b.images.images)  # type: ignore[attr-defined]
        assert np.array_equal(a.labels, b.labels)
        assert list(a.image_ids) == list(b.image_ids)
        assert not torch.equal(a.images.images, c.images.images)  # type: ignore[attr-defined]


def test_factory_serves_the_generated_scenes() -> None:
    dataset = nd.negdigits(seed=2, **SMALL)
    scenes = nd.generate_scenes(**scene_options(seed=2))
    for split_name in SPLITS:
        split = dataset.splits[split_name]
        served = split.images.images[:, 0].numpy()  # type: ignore[attr-defined]
        assert np.array_equal(served, scenes[split_name].images)
        assert np.array_equal(split.labels, scenes[split_name].labels)


def test_resizing_one_split_leaves_the_others_unchanged() -> None:
    base = nd.generate_scenes(**scene_options())
    bigger = nd.generate_scenes(**scene_options(train_images=500))
    for split_name in ("val", "test"):
        assert np.array_equal(base[split_name].images, bigger[split_name].images)


def test_source_digits_are_partitioned_disjointly_and_stratified() -> None:
    _, values = nd.load_source_digits()
    partition = nd.source_partition(seed=0)
    assert nd.source_partition(seed=0).keys() == partition.keys() == set(SPLITS)
    assert sum(len(p) for p in partition.values()) == len(values) == 1797
    assert len(np.unique(np.concatenate(list(partition.values())))) == 1797
    for split_name, share in nd.SOURCE_SHARES.items():
        per_value = np.bincount(values[partition[split_name]], minlength=10)
        expected = share * np.bincount(values, minlength=10)
        assert np.all(np.abs(per_value - expected) <= 1), split_name
    assert not np.array_equal(partition["train"], nd.source_partition(seed=1)["train"])


def test_each_split_draws_only_on_its_own_source_digits() -> None:
    partition = nd.source_partition(seed=5)
    scenes = nd.generate_scenes(**scene_options(seed=5))
    for split_name in SPLITS:
        used = {p.source_index for scene in scenes[split_name].placements for p in scene}
        assert used <= set(partition[split_name].tolist()), split_name


@pytest.mark.parametrize("share", [0.0, 0.3, 0.65, 0.9])
def test_negative_share_per_split(share: float) -> None:
    scenes = nd.generate_scenes(**scene_options(negative_share=share))
    for split_name in SPLITS:
        labels = scenes[split_name].labels
        negatives = int((labels.sum(axis=1) == 0).sum())
        assert negatives == round(share * len(labels)), split_name


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"class_digits": [9, 3], "digits_per_image": 5, "image_size": 40},
        # Too tight for random placement at large sizes: exercises shrinking and the grid.
        {"image_size": 16, "digits_per_image": 4, "max_scale": 2.0},
    ],
)
def test_labels_and_pixels_agree_with_the_placed_digits(overrides: dict[str, Any]) -> None:
    options = scene_options(noise=0.0, **overrides)
    classes = list(options["class_digits"])
    size, most = options["image_size"], options["digits_per_image"]
    sources, values = nd.load_source_digits()
    for split in nd.generate_scenes(**options).values():
        for image, labels, scene in zip(split.images, split.labels, split.placements, strict=True):
            assert 1 <= len(scene) <= most
            present = {p.digit for p in scene}
            assert labels.tolist() == [int(d in present) for d in classes]
            expected = np.zeros((size, size), dtype=np.int64)
            boxes = np.zeros((size, size), dtype=np.int64)
            for p in scene:
                assert values[p.source_index] == p.digit
                assert 0 <= p.top <= size - p.size and 0 <= p.left <= size - p.size
                digit = torch.from_numpy(np.array(sources[p.source_index]))[None, None]
                mode = "bilinear" if p.bilinear else "nearest-exact"
                resized = F.interpolate(digit, size=(p.size, p.size), mode=mode)[0, 0].numpy()
                window = (slice(p.top, p.top + p.size), slice(p.left, p.left + p.size))
                expected[window] = np.rint(resized * 255)
                boxes[window] += 1
            assert boxes.max() == 1, "digits overlap"
            assert np.abs(image.astype(np.int64) - expected).max() <= 1


def test_negatives_hold_only_clutter_and_positives_a_class_digit() -> None:
    scenes = nd.generate_scenes(**scene_options(class_digits=(1, 7)))
    for split in scenes.values():
        for labels, scene in zip(split.labels, split.placements, strict=True):
            holds_class = any(p.digit in (1, 7) for p in scene)
            assert holds_class == bool(labels.any())


def test_background_noise_stays_light() -> None:
    scenes = nd.generate_scenes(**scene_options(noise=0.1))
    image, scene = scenes["train"].images[0], scenes["train"].placements[0]
    background = np.ones_like(image, dtype=bool)
    for p in scene:
        background[p.top : p.top + p.size, p.left : p.left + p.size] = False
    assert 0 < image[background].max() <= round(0.1 * 255)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("negative_share", 1.0),
        ("negative_share", -0.1),
        ("negative_share", "many"),
        ("class_digits", []),
        ("class_digits", [1, 1]),
        ("class_digits", [3, 10]),
        ("class_digits", list(range(10))),
        ("class_digits", "123"),
        ("digits_per_image", 0),
        ("image_size", 4),
        ("image_size", 15),  # one 8x8 cell cannot hold the default three digits
        ("max_scale", 0.5),
        ("noise", 1.5),
        ("seed", -1),
        ("seed", 1.5),
        ("train_images", 0),
        ("val_images", 0),
        ("test_images", True),
    ],
)
def test_bad_option_raises_spec_error_naming_it(option: str, value: Any) -> None:
    with pytest.raises(SpecError, match=f"'{option}'") as raised:
        nd.negdigits(**{option: value})
    assert "\n" not in str(raised.value)


def test_reads_the_same_digits_as_scikit_learn() -> None:
    from sklearn.datasets import load_digits

    images, values = nd.load_source_digits()
    bunch = load_digits()
    assert np.array_equal(values, bunch.target)
    assert np.allclose(images, bunch.images / 16)
