"""chestxray14: the NIH ChestX-ray14 chest X-rays (Wang et al., CVPR 2017), grayscale.

``root`` holds ``Data_Entry_2017*.csv`` (``Image Index``, pipe-separated ``Finding Labels``,
``Patient ID``), the official ``train_val_list.txt`` and ``test_list.txt``, and the PNGs in
``images/`` or in the release's ``images_001/images/`` … ``images_012/images/``. "No Finding"
is a negative. Splits are by patient, so no patient's X-rays are in two splits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from mlcbench_plugins.datasets import common
from mlcbench_plugins.datasets.common import Augmentation

from mlcbench.data import DataError, FileSplit, MultiLabelDataset, image_file_dataset
from mlcbench.errors import SpecError
from mlcbench.hookspecs import RegisterDataset, hookimpl

NAME = "chestxray14"
CLASSES = (
    *("Infiltration", "Effusion", "Atelectasis", "Nodule", "Mass", "Pneumothorax"),
    *("Consolidation", "Pleural_Thickening", "Cardiomegaly", "Emphysema", "Edema"),
    *("Fibrosis", "Pneumonia", "Hernia"),
)
NO_FINDING = "No Finding"
#: Normalisation of ChestX-ray14 (DESIGN §9), in [0, 1] units.
MEAN = (0.506,)
STD = (0.230,)
COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
OFFICIAL_LISTS = {"train_val": "train_val_list.txt", "test": "test_list.txt"}


@hookimpl
def mlcbench_register_datasets(register: RegisterDataset) -> None:
    register(NAME, chestxray14, runtime_options=common.RUNTIME_OPTIONS)


def chestxray14(
    *,
    root: str,
    images: str | None = None,
    entries: str | None = None,
    split: Literal["official", "patient"] = "official",
    val_share: float = 0.15,
    seed: int = 42,
    image_size: int = 224,
    augmentations: Sequence[Augmentation] = ("hflip", "color_jitter", "rotate5"),
    cache: bool = True,
    skip_unreadable: bool = False,
) -> MultiLabelDataset:
    """ChestX-ray14: 14 thoracic findings on grayscale X-rays; "No Finding" is a negative.

    Options:
        root: Folder with Data_Entry_2017*.csv, train_val_list.txt, test_list.txt and the
            images.
        images: Folder of the PNGs; by default root/images and root/images_*/images.
        entries: The Data_Entry CSV; by default the one Data_Entry_2017*.csv in root.
        split: ``official``: test is test_list.txt, and val_share of the train_val_list.txt
            patients form val. ``patient``: all patients split at random into train, val and
            test, val_share each for val and test (70/15/15 by default).
        val_share: Share of the patients in val (and, with split: patient, in test).
        seed: Seed of the random patient split.
        image_size: Side in pixels of the square grayscale images (squashed, not cropped).
        augmentations: Batch augmentations during training: hflip, color_jitter, rotate5.
        cache: Decode every image once into the shared decoded-image cache (false: decode
            the files on every read).
        skip_unreadable: Leave images that cannot be decoded out (counted in the manifest)
            instead of failing.
    """
    common.check_image_size(NAME, image_size)
    limit = 0.5 if split == "patient" else 1.0
    if not 0.0 < val_share < limit:
        raise SpecError(f"{NAME}: option 'val_share' must lie in (0, {limit:g}), got {val_share}")
    base = common.folder(NAME, "root", root)
    entries_path = _entries_file(base, entries)
    frame: Any = common.read_csv(NAME, entries_path, COLUMNS)
    names = [name.strip() for name in frame["Image Index"]]
    patients = [patient.strip() for patient in frame["Patient ID"]]
    common.reject_duplicates(NAME, entries_path, "Image Index", names, frame)
    labels = _labels(entries_path, list(frame["Finding Labels"]))
    notes = [f"Labels from {entries_path.name}; splits by patient ({split} split)."]
    assignment = _assign(base, split, names, patients, val_share, seed, entries_path, notes)
    index, first_folder = _image_index(base, images)
    splits: dict[str, FileSplit] = {}
    for number, split_name in enumerate(("train", "val", "test")):
        rows = np.flatnonzero(assignment == number)
        splits[split_name] = FileSplit(
            image_ids=tuple(names[r] for r in rows),
            paths=[index.get(names[r], str(first_folder / names[r])) for r in rows],
            labels=labels[rows],
            source=str(entries_path),
        )
    return image_file_dataset(
        NAME,
        CLASSES,
        splits,
        image_size=image_size,
        grayscale=True,
        mean=MEAN,
        std=STD,
        augmentations=augmentations,
        notes=tuple(notes),
        cache=cache,
        skip_unreadable=skip_unreadable,
        missing_hint="check the options 'root' and 'images'",
    )


def _entries_file(base: Path, entries: str | None) -> Path:
    if entries:
        return common.file(NAME, "entries", entries)
    found = sorted(base.glob("Data_Entry_2017*.csv"))
    if not found:
        raise SpecError(f"{NAME}: option 'root': no Data_Entry_2017*.csv in {base}")
    if len(found) > 1:
        raise SpecError(
            f"{NAME}: option 'root': {base} holds {', '.join(p.name for p in found)}; "
            "choose one with the option 'entries'"
        )
    return found[0]


def _labels(path: Path, findings: list[str]) -> np.ndarray:
    column = {name: k for k, name in enumerate(CLASSES)}
    labels = np.zeros((len(findings), len(CLASSES)), dtype=np.uint8)
    for row, text in enumerate(findings):
        tokens = [token.strip() for token in text.split("|") if token.strip()]
        if not tokens:
            raise DataError(f"{NAME}: {path}: empty 'Finding Labels' on line {row + 2}")
        if NO_FINDING in tokens:
            if len(tokens) > 1:
                raise DataError(
                    f"{NAME}: {path}: {NO_FINDING!r} together with other findings on line {row + 2}"
                )
            continue
        for token in tokens:
            if token not in column:
                raise DataError(
                    f"{NAME}: {path}: unknown finding {token!r} on line {row + 2} "
                    f"(known: {NO_FINDING}, {', '.join(CLASSES)})"
                )
            labels[row, column[token]] = 1
    return labels


def _assign(
    base: Path,
    split: str,
    names: list[str],
    patients: list[str],
    val_share: float,
    seed: int,
    entries_path: Path,
    notes: list[str],
) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test, -1 left out) of each row of the entries file."""
    assignment = np.full(len(names), -1, dtype=np.int64)
    if split == "patient":
        by_patient = common.split_groups(patients, (1 - 2 * val_share, val_share, val_share), seed)
        return np.array([by_patient[p] for p in patients], dtype=np.int64)
    row_of = {name: row for row, name in enumerate(names)}
    listed: dict[str, np.ndarray] = {}
    for part, file_name in OFFICIAL_LISTS.items():
        path = base / file_name
        if not path.is_file():
            raise SpecError(
                f"{NAME}: split 'official' needs {path}, which does not exist; add it or use "
                "split: patient"
            )
        rows = []
        for line, name in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            name = name.strip()
            if not name:
                continue
            if name not in row_of:
                raise DataError(f"{NAME}: {path}: {name} (line {line}) is not in {entries_path}")
            rows.append(row_of[name])
        listed[part] = np.array(rows, dtype=np.int64)
    both = np.intersect1d(listed["train_val"], listed["test"])
    if both.size:
        raise DataError(
            f"{NAME}: {names[both[0]]} is in both {OFFICIAL_LISTS['train_val']} and "
            f"{OFFICIAL_LISTS['test']}"
        )
    train_val_patients = [patients[r] for r in listed["train_val"]]
    by_patient = common.split_groups(train_val_patients, (1 - val_share, val_share), seed)
    assignment[listed["train_val"]] = [by_patient[p] for p in train_val_patients]
    assignment[listed["test"]] = 2
    unlisted = int((assignment == -1).sum())
    if unlisted:
        notes.append(f"{unlisted} images of {entries_path.name} are in neither list; left out.")
    shared = {patients[r] for r in listed["test"]} & set(train_val_patients)
    if shared:
        notes.append(f"{len(shared)} patients have X-rays in both the official lists.")
    return assignment


def _image_index(base: Path, images: str | None) -> tuple[dict[str, str], Path]:
    """File name → path of every image, and the folder a missing image is reported in."""
    if images:
        folders = [common.folder(NAME, "images", images)]
    else:
        folders = [base / "images"] if (base / "images").is_dir() else []
        for part in sorted(base.glob("images_*")):
            if (part / "images").is_dir():
                folders.append(part / "images")
            elif part.is_dir():
                folders.append(part)
        if not folders:
            raise SpecError(
                f"{NAME}: option 'root': no images/ or images_*/images/ folder in {base}; "
                "set the option 'images'"
            )
    index: dict[str, str] = {}
    for folder in folders:
        with os.scandir(folder) as entries:
            for entry in entries:
                index.setdefault(entry.name, entry.path)
    return index, folders[0]
