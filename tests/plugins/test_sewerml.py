"""The sewerml dataset plugin on a Sewer-ML fixture: CSV labels, CIW weights, val as test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_fixtures import (
    SEWER_CLASSES,
    SewerFixture,
    drop_csv_column,
    isolated_cache,
    make_sewerml,
    rewrite_csv_cell,
)
from mlcbench_plugins.datasets.sewerml import CIW_WEIGHTS, CLASSES, sewerml

from mlcbench.data import DataError, MultiLabelDataset
from mlcbench.errors import SpecError

__all__ = ["isolated_cache"]
pytestmark = pytest.mark.usefixtures("isolated_cache")
SIZE = 16


def build(fixture: SewerFixture, **options: object) -> MultiLabelDataset:
    return sewerml(
        annotations=str(fixture.annotations),
        images=str(fixture.images),
        image_size=SIZE,
        **options,  # type: ignore[arg-type]
    )


def test_labels_come_from_the_17_code_columns(tmp_path: Path) -> None:
    fixture = make_sewerml(tmp_path)
    dataset = build(fixture)
    assert dataset.class_names == SEWER_CLASSES == CLASSES
    assert dataset.class_weights == CIW_WEIGHTS and set(CIW_WEIGHTS) == set(CLASSES)
    assert CIW_WEIGHTS["RB"] == 1.0 and CIW_WEIGHTS["AF"] == 0.0811
    assert dataset.mean == (0.523, 0.453, 0.345) and dataset.std == (0.210, 0.199, 0.154)
    for split in ("train", "val"):
        truth = fixture.truth[split]
        part = dataset.splits[split]
        assert list(part.image_ids) == list(truth)
        expected = [[int(code in truth[name]) for code in CLASSES] for name in truth]
        np.testing.assert_array_equal(part.labels, np.array(expected, dtype=np.uint8))
        assert part.negatives == sum(1 for codes in truth.values() if not codes)
    image, _ = dataset.splits["train"].images[4]  # a PNG among the JPEGs
    assert image.dtype == torch.uint8 and image.shape == (3, SIZE, SIZE)


def test_without_test_labels_val_is_the_held_out_split_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dataset = build(make_sewerml(tmp_path))
    val, test = dataset.splits["val"], dataset.splits["test"]
    assert list(test.image_ids) == list(val.image_ids)
    np.testing.assert_array_equal(test.labels, val.labels)
    manifest = dataset.manifest()
    assert manifest["test"]["note"].startswith("Sewer-ML's test labels are not public: the test")
    assert "note" not in manifest["val"]
    assert any("test split is the val split" in note for note in dataset.notes)
    assert "test labels are not public" in caplog.text


def test_a_labelled_test_csv_is_used(tmp_path: Path) -> None:
    fixture = make_sewerml(tmp_path, test_labels=True)
    dataset = build(fixture)
    assert list(dataset.splits["test"].image_ids) == list(fixture.truth["test"])
    assert "note" not in dataset.manifest()["test"]


def test_labels_that_are_not_0_or_1_are_named_by_line(tmp_path: Path) -> None:
    fixture = make_sewerml(tmp_path)
    path = fixture.annotations / "SewerML_Val.csv"
    rewrite_csv_cell(path, 5, "FS", "2")
    with pytest.raises(DataError) as caught:
        build(fixture)
    assert str(caught.value) == (
        f"sewerml: {path}: column 'FS' holds '2' on line 5; labels must be 0 or 1"
    )
    rewrite_csv_cell(path, 5, "FS", "")
    with pytest.raises(DataError, match="column 'FS' holds an empty cell on line 5;"):
        build(fixture)


def test_a_csv_with_missing_columns_is_named(tmp_path: Path) -> None:
    fixture = make_sewerml(tmp_path)
    path = fixture.annotations / "SewerML_Train.csv"
    drop_csv_column(path, "OB")
    with pytest.raises(DataError) as caught:
        build(fixture)
    message = str(caught.value)
    assert message.startswith(f"sewerml: {path}: missing column 'OB' (found: Filename, RB, PF,")


def test_a_missing_image_and_a_missing_csv(tmp_path: Path) -> None:
    fixture = make_sewerml(tmp_path)
    missing = fixture.images / "Train" / "train_00002.jpg"
    missing.unlink()
    with pytest.raises(DataError) as caught:
        build(fixture)
    assert str(caught.value).startswith(
        f"sewerml: {missing}: image file not found (listed in "
        f"{fixture.annotations / 'SewerML_Train.csv'}); check the 'images' option"
    )
    (fixture.annotations / "SewerML_Val.csv").unlink()
    with pytest.raises(SpecError, match=r"^sewerml: option 'annotations': .*SewerML_Val.csv does"):
        build(fixture)


def test_a_defect_column_that_disagrees_is_noted_not_fatal(tmp_path: Path) -> None:
    fixture = make_sewerml(tmp_path)
    rewrite_csv_cell(fixture.annotations / "SewerML_Train.csv", 3, "Defect", "1")
    dataset = build(fixture)
    assert any("Defect column disagrees" in note and "1 rows" in note for note in dataset.notes)


def test_images_in_another_layout_are_found_by_name(tmp_path: Path) -> None:
    fixture = make_sewerml(tmp_path)
    unpacked = fixture.images / "valid0"  # e.g. the val archive unpacked under its own name
    (fixture.images / "Val").rename(unpacked)
    dataset = build(fixture)
    assert len(dataset.splits["val"].image_ids) == 12
    assert dataset.splits["val"].images[0][0].shape == (3, SIZE, SIZE)
