"""The csv dataset plugin (the user's own data): both layouts, bad input, and a real run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from dataset_fixtures import (
    USER_CLASSES,
    UserFixture,
    drop_csv_column,
    isolated_cache,
    make_user_csvs,
    rewrite_csv_cell,
)
from mlcbench_plugins.datasets.csv_dataset import csv_dataset

from mlcbench.cli import main
from mlcbench.data import SPLITS, DataError, MultiLabelDataset
from mlcbench.errors import SpecError

__all__ = ["isolated_cache"]
pytestmark = pytest.mark.usefixtures("isolated_cache")
SIZE = 16


def per_split(fixture: UserFixture, **options: Any) -> MultiLabelDataset:
    files = {split: str(fixture.root / f"{split}.csv") for split in SPLITS}
    return csv_dataset(**files, image_size=options.pop("image_size", SIZE), **options)


def check_against_truth(dataset: MultiLabelDataset, fixture: UserFixture) -> None:
    for split in SPLITS:
        truth = fixture.truth[split]
        part = dataset.splits[split]
        assert list(part.image_ids) == list(truth)
        expected = [[int(c in truth[path]) for c in dataset.class_names] for path in truth]
        np.testing.assert_array_equal(part.labels, np.array(expected, dtype=np.uint8))
        assert part.negatives == sum(1 for labels in truth.values() if not labels)


def test_one_csv_per_split_with_0_1_columns(tmp_path: Path) -> None:
    fixture = make_user_csvs(tmp_path / "data")
    dataset = per_split(fixture)
    assert dataset.class_names == USER_CLASSES  # the columns, in file order
    assert (dataset.in_channels, dataset.in_memory) == (3, False)
    check_against_truth(dataset, fixture)
    image, labels = dataset.splits["test"].images[1]
    assert image.dtype == torch.uint8 and image.shape == (3, SIZE, SIZE)
    assert labels.shape == (3,)
    # No mean/std given: measured on the training images, in [0, 1].
    assert len(dataset.mean) == 3 and all(0 < m < 1 for m in dataset.mean)
    assert all(0 < s < 0.6 for s in dataset.std)
    assert any("Normalisation measured" in note for note in dataset.notes)


def test_one_csv_with_a_split_column_and_a_label_list(tmp_path: Path) -> None:
    fixture = make_user_csvs(tmp_path / "data", layout="table")
    dataset = csv_dataset(
        csv=str(fixture.root / "data.csv"),
        label_column="labels",
        image_size=SIZE,
        grayscale=True,
        mean=[0.5],
        std=[0.25],
    )
    assert dataset.class_names == tuple(sorted(USER_CLASSES))  # found in the file, sorted
    assert dataset.in_channels == 1 and dataset.mean == (0.5,)
    assert dataset.splits["val"].images[0][0].shape == (1, SIZE, SIZE)
    check_against_truth(dataset, fixture)
    given = csv_dataset(
        csv=str(fixture.root / "data.csv"),
        label_column="labels",
        classes=["root", "crack", "deposit", "corrosion"],
        image_size=SIZE,
        mean=[0.5] * 3,
        std=[0.25] * 3,
    )
    assert given.class_names == ("root", "crack", "deposit", "corrosion")
    assert given.manifest()["train"]["class_counts"]["corrosion"] == 0


def test_classes_option_selects_0_1_columns_and_images_option_sets_the_root(
    tmp_path: Path,
) -> None:
    fixture = make_user_csvs(tmp_path / "data")
    moved = tmp_path / "elsewhere"
    for split in SPLITS:
        frame = pd.read_csv(fixture.root / f"{split}.csv")
        frame["note"] = "x"
        moved.mkdir(exist_ok=True)
        frame.to_csv(moved / f"{split}.csv", index=False)
    files = {split: str(moved / f"{split}.csv") for split in SPLITS}
    dataset = csv_dataset(
        **files, images=str(fixture.root), classes=["deposit", "crack"], image_size=SIZE
    )
    assert dataset.class_names == ("deposit", "crack")
    with pytest.raises(DataError) as caught:
        csv_dataset(**files, images=str(fixture.root), image_size=SIZE)
    assert str(caught.value) == (
        f"csv: {moved / 'train.csv'}: column 'note' holds 'x' on line 2; labels must be 0 or 1"
    )


def test_labels_that_are_not_0_or_1(tmp_path: Path) -> None:
    fixture = make_user_csvs(tmp_path / "data")
    path = fixture.root / "val.csv"
    rewrite_csv_cell(path, 7, "root", "yes")
    with pytest.raises(DataError) as caught:
        per_split(fixture)
    assert str(caught.value) == (
        f"csv: {path}: column 'root' holds 'yes' on line 7; labels must be 0 or 1"
    )


def test_missing_and_mismatched_columns(tmp_path: Path) -> None:
    fixture = make_user_csvs(tmp_path / "data")
    drop_csv_column(fixture.root / "test.csv", "deposit")
    with pytest.raises(DataError) as caught:
        per_split(fixture)
    assert str(caught.value) == (
        f"csv: {fixture.root / 'test.csv'}: missing class column 'deposit' (it is in train.csv)"
    )
    drop_csv_column(fixture.root / "val.csv", "image")
    with pytest.raises(DataError) as caught:
        per_split(fixture)
    assert str(caught.value) == (
        f"csv: {fixture.root / 'val.csv'}: missing column 'image' (found: crack, root, deposit)"
    )


def test_split_column_values_unknown_labels_and_leaks(tmp_path: Path) -> None:
    fixture = make_user_csvs(tmp_path / "data", layout="table")
    path = fixture.root / "data.csv"
    options: dict[str, Any] = {"csv": str(path), "label_column": "labels", "image_size": SIZE}
    rewrite_csv_cell(path, 40, "split", "holdout")
    with pytest.raises(DataError) as caught:
        csv_dataset(**options)
    assert str(caught.value) == (
        f"csv: {path}: column 'split' holds 'holdout' on line 40; use train, val or test"
    )
    rewrite_csv_cell(path, 40, "split", "VALIDATION")
    rewrite_csv_cell(path, 45, "labels", "crack|rust")
    with pytest.raises(DataError) as caught:
        csv_dataset(**options, classes=list(USER_CLASSES))
    assert str(caught.value) == (
        f"csv: {path}: unknown label 'rust' in column 'labels' on line 45 "
        "(classes: crack, root, deposit)"
    )
    rewrite_csv_cell(path, 45, "labels", "")
    rewrite_csv_cell(path, 50, "image", "images/train/train_0000.jpg")
    with pytest.raises(DataError) as caught:
        csv_dataset(**options)
    assert str(caught.value) == (
        f"csv: {path}: image 'images/train/train_0000.jpg' is in both the train and the test split"
    )


def test_option_combinations_are_checked(tmp_path: Path) -> None:
    fixture = make_user_csvs(tmp_path / "data")
    with pytest.raises(SpecError, match=r"^csv: missing options val, test; give a CSV per split"):
        csv_dataset(train=str(fixture.root / "train.csv"))
    with pytest.raises(SpecError, match=r"^csv: option 'mean' needs 1 value\(s\) for grayscale"):
        per_split(fixture, grayscale=True, mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])
    with pytest.raises(SpecError, match=r"^csv: option 'test': .*nope.csv does not exist$"):
        csv_dataset(
            train=str(fixture.root / "train.csv"),
            val=str(fixture.root / "val.csv"),
            test=str(fixture.root / "nope.csv"),
        )


def test_skip_unreadable_leaves_the_image_out_and_counts_it(tmp_path: Path) -> None:
    fixture = make_user_csvs(tmp_path / "data")
    bad = fixture.root / "images" / "val" / "val_0003.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DataError, match=rf"^csv: {bad}: cannot decode image \("):
        per_split(fixture, mean=[0.5] * 3, std=[0.2] * 3)
    dataset = per_split(fixture, skip_unreadable=True, mean=[0.5] * 3, std=[0.2] * 3)
    assert len(dataset.splits["val"].image_ids) == 11
    assert "images/val/val_0003.jpg" not in dataset.splits["val"].image_ids
    assert dataset.manifest()["val"]["skipped"] == 1


@pytest.mark.slow
def test_a_tiny_run_trains_on_a_file_backed_dataset(tmp_path: Path) -> None:
    fixture = make_user_csvs(tmp_path / "data")
    spec = tmp_path / "mine.yaml"
    spec.write_text(
        "name: mine\n"
        "datasets:\n"
        "  - name: csv\n"
        "    train: ${MY_DATA}/train.csv\n"
        "    val: ${MY_DATA}/val.csv\n"
        "    test: ${MY_DATA}/test.csv\n"
        "    image_size: 32\n"
        "backbones:\n"
        "  - {name: smallcnn, width: 8, depth: 2}\n"
        "losses: [bce+any_class]\n"
        "train: {epochs: 1, batch_size: 8}\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    # In this process (a cell's own process only adds start-up time here); the loaders still
    # use worker processes (num_workers auto: the dataset is not in memory).
    argv = ["run", str(spec), "--out", str(out), "--no-progress", "--in-process"]
    assert main([*argv, "--var", f"MY_DATA={fixture.root}"]) == 0
    (cell,) = out.glob("cells/*/metrics.json")
    metrics = json.loads(cell.read_text())
    assert metrics["cell"]["dataset"] == "csv"
    assert 0.0 <= metrics["test"]["threshold_0.5"]["map"] <= 1.0
    (manifest,) = out.glob("labels/*/manifest.json")
    splits = json.loads(manifest.read_text())["splits"]
    assert splits["train"]["images"] == 32 and splits["train"]["negatives"] == 19
    scores = pd.read_csv(cell.parent / "scores_test.csv")
    assert list(scores.columns) == ["image_id", *USER_CLASSES] and len(scores) == 12
