"""The chestxray14 dataset plugin on a ChestX-ray14 fixture: findings, patient splits, grayscale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from dataset_fixtures import (
    CHEST_FINDINGS,
    ChestFixture,
    isolated_cache,
    make_chestxray14,
    rewrite_csv_cell,
)
from mlcbench_plugins.datasets.chestxray14 import CLASSES, chestxray14

from mlcbench.data import SPLITS, DataError, MultiLabelDataset
from mlcbench.errors import SpecError
from mlcbench.image_cache import ImageFormat, decode_image

__all__ = ["isolated_cache"]
pytestmark = pytest.mark.usefixtures("isolated_cache")
SIZE = 20


@pytest.fixture
def fixture(tmp_path: Path) -> ChestFixture:
    return make_chestxray14(tmp_path / "nih")


def build(fixture: ChestFixture, **options: Any) -> MultiLabelDataset:
    return chestxray14(root=str(fixture.root), image_size=SIZE, **options)


def patients_of(fixture: ChestFixture, dataset: MultiLabelDataset, split: str) -> set[str]:
    return {fixture.patient[name] for name in dataset.splits[split].image_ids}


def test_official_split_findings_and_grayscale_images(fixture: ChestFixture) -> None:
    dataset = build(fixture)
    assert dataset.class_names == CHEST_FINDINGS == CLASSES
    assert (dataset.in_channels, dataset.mean, dataset.std) == (1, (0.506,), (0.230,))
    assert "rotate5" in dataset.augmentations
    assert list(dataset.splits["test"].image_ids) == fixture.test_list
    every = [name for split in SPLITS for name in dataset.splits[split].image_ids]
    assert sorted(every) == sorted(fixture.truth)  # every image is in exactly one split
    for split in SPLITS:
        part = dataset.splits[split]
        expected = [[int(c in fixture.truth[name]) for c in CLASSES] for name in part.image_ids]
        np.testing.assert_array_equal(part.labels, np.array(expected, dtype=np.uint8))
    assert sum(dataset.splits[s].negatives for s in SPLITS) == sum(
        1 for findings in fixture.truth.values() if not findings
    )
    # val comes out of train_val by patient: no patient in two splits.
    train, val, test = (patients_of(fixture, dataset, s) for s in SPLITS)
    assert val and not (train & val) and not (train & test) and not (val & test)
    image, _ = dataset.splits["train"].images[0]
    assert image.dtype == torch.uint8 and image.shape == (1, SIZE, SIZE)


def test_patient_split_is_70_15_15_of_patients_and_seeded(fixture: ChestFixture) -> None:
    dataset = build(fixture, split="patient")
    patients = [patients_of(fixture, dataset, s) for s in SPLITS]
    # 16 patients: 11.2 / 2.4 / 2.4, rounded by largest remainder (the tie goes to val).
    assert [len(p) for p in patients] == [11, 3, 2]
    assert not (patients[0] & patients[1]) and not (patients[0] & patients[2])
    again = build(fixture, split="patient")
    assert again.splits["val"].image_ids == dataset.splits["val"].image_ids
    other = build(fixture, split="patient", seed=3)
    assert [other.splits[s].image_ids for s in SPLITS] != [
        dataset.splits[s].image_ids for s in SPLITS
    ]


def test_rgba_and_16_bit_pngs_become_8_bit_grayscale(fixture: ChestFixture) -> None:
    names = sorted(fixture.truth)
    rgba = fixture.root / "images_002" / "images" / names[5]
    sixteen = fixture.root / "images_001" / "images" / names[6]
    for path in (rgba, sixteen):
        pixels = decode_image(path, ImageFormat(SIZE, "L"))
        assert pixels.dtype == np.uint8 and pixels.shape == (1, SIZE, SIZE)
        assert 0 < pixels.max() <= 255 and pixels.std() > 0


def test_an_unknown_finding_is_named_by_line(fixture: ChestFixture) -> None:
    path = fixture.root / "Data_Entry_2017_v2020.csv"
    rewrite_csv_cell(path, 4, "Finding Labels", "Effusion|Pneumonitis")
    with pytest.raises(DataError) as caught:
        build(fixture)
    assert str(caught.value).startswith(
        f"chestxray14: {path}: unknown finding 'Pneumonitis' on line 4 (known: No Finding, "
    )


def test_missing_list_file_and_ambiguous_entries(fixture: ChestFixture) -> None:
    (fixture.root / "test_list.txt").unlink()
    with pytest.raises(SpecError) as caught:
        build(fixture)
    assert str(caught.value) == (
        f"chestxray14: split 'official' needs {fixture.root / 'test_list.txt'}, which does not "
        "exist; add it or use split: patient"
    )
    assert build(fixture, split="patient").splits["test"].image_ids
    copy = fixture.root / "Data_Entry_2017.csv"
    copy.write_bytes((fixture.root / "Data_Entry_2017_v2020.csv").read_bytes())
    with pytest.raises(SpecError, match=r"choose one with the option 'entries'$"):
        build(fixture, split="patient")
    assert build(fixture, split="patient", entries=str(copy)).class_names == CLASSES


def test_a_listed_image_missing_from_the_entries_is_named(fixture: ChestFixture) -> None:
    listing = fixture.root / "test_list.txt"
    listing.write_text(listing.read_text() + "99999999_000.png\n")
    with pytest.raises(DataError) as caught:
        build(fixture)
    lines = len(fixture.test_list) + 1
    assert str(caught.value) == (
        f"chestxray14: {listing}: 99999999_000.png (line {lines}) is not in "
        f"{fixture.root / 'Data_Entry_2017_v2020.csv'}"
    )
