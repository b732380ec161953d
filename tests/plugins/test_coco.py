"""The coco dataset plugin on a prepared COCO fixture: labels, negatives, images, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from dataset_fixtures import (
    CocoFixture,
    corrupt,
    isolated_cache,
    make_coco_splits,
    not_an_image,
    read_json,
    write_json,
)
from mlcbench_plugins.datasets.coco import coco

from mlcbench.data import SPLITS, DataError, MultiLabelDataset
from mlcbench.errors import SpecError

__all__ = ["isolated_cache"]
pytestmark = pytest.mark.usefixtures("isolated_cache")
SIZE = 24


@pytest.fixture
def fixture(tmp_path: Path) -> CocoFixture:
    return make_coco_splits(tmp_path / "coco")


def build(fixture: CocoFixture, **options: Any) -> MultiLabelDataset:
    return coco(
        annotations=str(fixture.annotations),
        images=str(fixture.root / "images"),
        image_size=options.pop("image_size", SIZE),
        **options,
    )


def expected_labels(fixture: CocoFixture, split: str, classes: tuple[str, ...]) -> np.ndarray:
    ids = sorted(i for i, part in fixture.part.items() if part == split)
    return np.array([[int(c in fixture.truth[i]) for c in classes] for i in ids], dtype=np.uint8)


def test_splits_labels_and_negatives_follow_the_annotations(fixture: CocoFixture) -> None:
    dataset = build(fixture)
    assert dataset.class_names == ("person", "bird", "cat", "dog", "bottle")  # by category id
    assert (dataset.in_channels, dataset.image_size, dataset.in_memory) == (3, SIZE, False)
    assert dataset.mean == (0.470, 0.447, 0.408) and dataset.std == (0.233, 0.228, 0.231)
    for split in SPLITS:
        part = dataset.splits[split]
        ids = sorted(i for i, p in fixture.part.items() if p == split)
        assert list(part.image_ids) == [str(i) for i in ids]
        np.testing.assert_array_equal(
            part.labels, expected_labels(fixture, split, dataset.class_names)
        )
    # An image without any annotation is a negative and is kept, never dropped.
    unannotated = [i for i, names in fixture.truth.items() if not names]
    assert unannotated and all(
        str(i) in dataset.splits[fixture.part[i]].image_ids for i in unannotated
    )
    manifest = dataset.manifest()
    assert manifest["train"]["images"] == 24
    assert manifest["train"]["negatives"] == 4
    assert manifest["train"]["class_counts"]["cat"] == 8


def test_images_decode_to_uint8_at_the_dataset_size(fixture: CocoFixture) -> None:
    dataset = build(fixture)
    image, labels = dataset.splits["val"].images[3]
    assert image.dtype == torch.uint8 and image.shape == (3, SIZE, SIZE)
    assert labels.dtype == torch.float32
    assert labels.tolist() == dataset.splits["val"].labels[3].tolist()
    assert image.float().std() > 0  # real pixels, not an empty placeholder


def test_dropping_a_category_turns_its_only_images_into_negatives(fixture: CocoFixture) -> None:
    dataset = build(fixture, drop_categories=["person"])
    assert dataset.class_names == ("bird", "cat", "dog", "bottle")
    person_only = [i for i, names in fixture.truth.items() if names == {"person"}]
    train = dataset.splits["train"]
    for image_id in person_only:
        split = dataset.splits[fixture.part[image_id]]
        row = list(split.image_ids).index(str(image_id))
        assert split.labels[row].sum() == 0
    assert train.negatives == 8  # 4 unannotated + 4 person-only, all kept
    assert len(train.image_ids) == 24
    kept = build(fixture, keep_categories=["cat", "dog"])
    assert kept.class_names == ("cat", "dog")


def test_category_options_are_checked(fixture: CocoFixture) -> None:
    with pytest.raises(SpecError, match=r"^coco: give drop_categories or keep_categories"):
        build(fixture, drop_categories=["cat"], keep_categories=["dog"])
    with pytest.raises(SpecError) as caught:
        build(fixture, drop_categories=["persn"])
    assert str(caught.value) == (
        "coco: option 'drop_categories': unknown class 'persn' — did you mean 'person'? "
        "(known: person, bird, cat, dog, bottle)"
    )


def test_missing_roots_name_the_option_and_path(fixture: CocoFixture, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        coco(annotations=str(tmp_path / "nowhere"), images=str(fixture.root))
    assert str(caught.value) == f"coco: option 'annotations': {tmp_path / 'nowhere'} does not exist"


def test_a_missing_image_file_is_one_line_naming_it(fixture: CocoFixture) -> None:
    missing = fixture.root / "images" / "val" / "000026.jpg"
    missing.unlink()
    with pytest.raises(DataError) as caught:
        build(fixture)
    assert str(caught.value) == (
        f"coco: {missing}: image file not found (listed in "
        f"{fixture.annotations / 'instances_val.json'}); check the 'images' option "
        "(file_name entries are relative to it)"
    )


@pytest.mark.parametrize("damage", [corrupt, not_an_image])
def test_a_corrupt_image_fails_and_skip_unreadable_counts_it(
    fixture: CocoFixture, damage: Any
) -> None:
    bad = fixture.root / "images" / "train" / "000005.jpg"
    damage(bad)
    with pytest.raises(DataError) as caught:
        build(fixture)
    message = str(caught.value)
    assert message.startswith(f"coco: {bad}: cannot decode image (")
    assert message.endswith(
        "); replace or remove the file, or set skip_unreadable: true to leave unreadable images out"
    )
    assert "\n" not in message
    dataset = build(fixture, skip_unreadable=True)
    train = dataset.splits["train"]
    assert "5" not in train.image_ids and len(train.image_ids) == 23
    manifest = dataset.manifest()["train"]
    assert manifest["skipped"] == 1 and manifest["skipped_images"][0].startswith(f"{bad}: ")
    assert "skipped" not in dataset.manifest()["val"]


def test_an_annotation_for_an_unknown_image_is_rejected(fixture: CocoFixture) -> None:
    path = fixture.annotations / "instances_train.json"
    data = read_json(path)
    data["annotations"].append(
        {"id": 9999, "image_id": 424242, "category_id": 17, "bbox": [0, 0, 1, 1]}
    )
    write_json(path, data)
    with pytest.raises(DataError) as caught:
        build(fixture)
    assert str(caught.value) == (
        f"coco: {path}: annotation 9999 is for image_id 424242, which is not in the file's images"
    )


def test_a_category_in_one_split_but_not_another_is_rejected(fixture: CocoFixture) -> None:
    path = fixture.annotations / "instances_test.json"
    data = read_json(path)
    data["categories"].append({"id": 90, "name": "toothbrush"})
    write_json(path, data)
    with pytest.raises(DataError) as caught:
        build(fixture)
    assert str(caught.value) == (
        f"coco: {path}: category 'toothbrush' (id 90) is not in instances_train.json; every "
        "split must declare the same categories"
    )


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: d.pop("images"), "missing the list 'images' of a COCO instances file"),
        (lambda d: d["images"].append(dict(d["images"][0])), "image id 1 is listed twice"),
        (
            lambda d: d["annotations"][0].update(category_id=77),
            "annotation 1 has category_id 77, which is not in the file's categories",
        ),
    ],
)
def test_malformed_instance_files_are_named(fixture: CocoFixture, edit: Any, problem: str) -> None:
    path = fixture.annotations / "instances_train.json"
    data = read_json(path)
    edit(data)
    write_json(path, data)
    with pytest.raises(DataError) as caught:
        build(fixture)
    assert str(caught.value) == f"coco: {path}: {problem}"


def test_invalid_json_is_named(fixture: CocoFixture) -> None:
    path = fixture.annotations / "instances_val.json"
    path.write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^coco: {path}: not valid JSON \(") as caught:
        build(fixture)
    assert "\n" not in str(caught.value)
