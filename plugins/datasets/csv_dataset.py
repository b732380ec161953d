"""csv: your own images and labels, from CSV files (how a defect-inspection team brings its data).

Either one CSV per split (``train``, ``val``, ``test``) or one CSV (``csv``) with a split
column. Each row names an image file (relative to ``images``, or to the CSV's folder) and its
labels, in one of two layouts:

- one 0/1 column per class (the class names are the column names), or
- one column (``label_column``) holding the labels present, joined by ``label_separator``
  (e.g. ``crack|root``); an empty cell, or ``negative_label``, is a negative.

Example, one 0/1 column per class::

    image,crack,root,deposit
    pipe/0001.jpg,0,1,0
    pipe/0002.jpg,0,0,0

Without ``mean`` and ``std`` the normalisation is measured on (up to 1,000) training images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mlcbench_plugins.datasets import common
from mlcbench_plugins.datasets.common import Augmentation

from mlcbench.data import SPLITS, DataError, FileSplit, MultiLabelDataset, image_file_dataset
from mlcbench.errors import SpecError
from mlcbench.hookspecs import RegisterDataset, hookimpl

NAME = "csv"
#: Values of the split column (case-insensitive) → split.
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@hookimpl
def mlcbench_register_datasets(register: RegisterDataset) -> None:
    register(NAME, csv_dataset, runtime_options=common.RUNTIME_OPTIONS)


def csv_dataset(
    *,
    train: str | None = None,
    val: str | None = None,
    test: str | None = None,
    csv: str | None = None,
    split_column: str = "split",
    images: str | None = None,
    image_column: str = "image",
    id_column: str | None = None,
    classes: Sequence[str] | None = None,
    label_column: str | None = None,
    label_separator: str = "|",
    negative_label: str | None = None,
    grayscale: bool = False,
    image_size: int = 224,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    augmentations: Sequence[Augmentation] = ("hflip", "color_jitter"),
    cache: bool = True,
    skip_unreadable: bool = False,
) -> MultiLabelDataset:
    """Your own images: CSVs naming an image file and its labels (0/1 columns or one label list).

    Options:
        train: CSV of the train split (with val and test; or use csv).
        val: CSV of the val split.
        test: CSV of the test split.
        csv: One CSV for all splits, with a split column (instead of train, val, test).
        split_column: Column of csv naming each row's split: train, val (or valid,
            validation) or test.
        images: Folder relative image paths start from; by default each CSV's own folder.
        image_column: Column holding the image path.
        id_column: Column holding a unique image id; by default the image path as written.
        classes: The class names, in order. With 0/1 columns: the columns to use (default:
            every other column). With label_column: the known labels (default: every label
            found, sorted); any other label is an error.
        label_column: Column holding the present labels joined by label_separator, instead
            of one 0/1 column per class.
        label_separator: Separator of the labels in label_column.
        negative_label: A label_column value that marks a negative, e.g. "normal" (an empty
            cell always does).
        grayscale: One-channel images instead of RGB.
        image_size: Side in pixels of the square images (squashed, not cropped).
        mean: Per-channel mean in [0, 1] for normalisation; by default measured on the
            training images.
        std: Per-channel standard deviation in [0, 1]; by default measured with mean.
        augmentations: Batch augmentations during training: hflip, color_jitter, rotate5.
        cache: Decode every image once into the shared decoded-image cache (false: decode
            the files on every read).
        skip_unreadable: Leave images that cannot be decoded out (counted in the manifest)
            instead of failing.
    """
    common.check_image_size(NAME, image_size)
    channels = 1 if grayscale else 3
    if (mean is None) != (std is None):
        raise SpecError(f"{NAME}: give both mean and std, or neither (then they are measured)")
    for option, values in (("mean", mean), ("std", std)):
        if values is not None and len(values) != channels:
            raise SpecError(
                f"{NAME}: option {option!r} needs {channels} value(s) for "
                f"{'grayscale' if grayscale else 'RGB'} images, got {len(values)}"
            )
    if std is not None and min(std) <= 0:
        raise SpecError(f"{NAME}: option 'std' must be positive, got {list(std)}")
    if label_column is None and negative_label is not None:
        raise SpecError(f"{NAME}: option 'negative_label' needs 'label_column'")
    if not label_separator:
        raise SpecError(f"{NAME}: option 'label_separator' is empty")
    tables = _split_tables(train, val, test, csv, split_column)
    image_root = None if images is None else common.folder(NAME, "images", images)
    reserved = {image_column, split_column if csv else "", id_column or ""} - {""}
    if label_column is None:
        class_names = _column_classes(tables, classes, reserved)
    else:
        class_names = _label_classes(tables, classes, label_column, label_separator, negative_label)
    splits: dict[str, FileSplit] = {}
    owner: dict[str, str] = {}
    for split_name, (path, frame) in tables.items():
        if label_column is None:
            labels = common.binary_columns(NAME, path, frame, class_names)
        else:
            labels = _parse_label_lists(
                path, frame, label_column, label_separator, negative_label, class_names
            )
        written = [value.strip() for value in frame[image_column]]
        if "" in written:
            line = common.line_of(frame, written.index(""))
            raise DataError(f"{NAME}: {path}: empty {image_column!r} on line {line}")
        ids = written if id_column is None else [v.strip() for v in frame[id_column]]
        what = f"image {'id' if id_column else 'path'}"
        common.reject_duplicates(NAME, path, what, ids, frame)
        for image_id in ids:
            if owner.setdefault(image_id, split_name) != split_name:
                raise DataError(
                    f"{NAME}: {path}: image {image_id!r} is in both the {owner[image_id]} and "
                    f"the {split_name} split"
                )
        base = image_root or path.parent
        splits[split_name] = FileSplit(
            image_ids=tuple(ids),
            paths=[str(base / value) for value in written],
            labels=labels,
            source=str(path),
        )
    dataset = image_file_dataset(
        NAME,
        class_names,
        splits,
        image_size=image_size,
        grayscale=grayscale,
        mean=tuple(mean) if mean is not None else (0.5,) * channels,
        std=tuple(std) if std is not None else (0.25,) * channels,
        augmentations=augmentations,
        notes=(f"Your data: {len(class_names)} classes from {_describe(tables)}.",),
        cache=cache,
        skip_unreadable=skip_unreadable,
        missing_hint="check the option 'images' (relative paths start there, or at the CSV's "
        "folder)",
    )
    if mean is not None:
        return dataset
    from mlcbench.image_cache import decoding_enabled, pixel_statistics

    if not decoding_enabled():
        return dataset
    measured_mean, measured_std = pixel_statistics(dataset.splits["train"].images)
    return dataclasses.replace(
        dataset,
        mean=measured_mean,
        std=measured_std,
        notes=(
            *dataset.notes,
            f"Normalisation measured on the training images: mean {list(measured_mean)}, "
            f"std {list(measured_std)}.",
        ),
    )


def _split_tables(
    train: str | None, val: str | None, test: str | None, csv: str | None, split_column: str
) -> dict[str, tuple[Path, Any]]:
    per_split = {"train": train, "val": val, "test": test}
    given = [name for name, value in per_split.items() if value]
    if csv and given:
        raise SpecError(
            f"{NAME}: give csv (one file with a split column) or train/val/test, not both"
        )
    if csv:
        path = common.file(NAME, "csv", csv)
        frame: Any = common.read_csv(NAME, path, (split_column,))
        values = [value.strip().lower() for value in frame[split_column]]
        for line, value in enumerate(values, start=2):
            if value not in SPLIT_VALUES:
                raise DataError(
                    f"{NAME}: {path}: column {split_column!r} holds {value!r} on line {line}; "
                    "use train, val or test"
                )
        mapped = np.array([SPLIT_VALUES[value] for value in values])
        tables = {}
        for split in SPLITS:
            part = frame[mapped == split]  # keeps the file's row numbers for messages
            if part.empty:
                raise DataError(f"{NAME}: {path}: no row of the {split} split")
            tables[split] = (path, part)
        return tables
    if len(given) < len(SPLITS):
        missing = [name for name in SPLITS if name not in given]
        raise SpecError(
            f"{NAME}: missing option{'s' * (len(missing) > 1)} {', '.join(missing)}; give a CSV "
            "per split (train, val, test), or one csv with a split column"
        )
    tables = {}
    for split, value in per_split.items():
        assert value is not None
        path = common.file(NAME, split, value)
        tables[split] = (path, common.read_csv(NAME, path))
    return tables


def _column_classes(
    tables: dict[str, tuple[Path, Any]], classes: Sequence[str] | None, reserved: set[str]
) -> list[str]:
    """The 0/1 class columns: as given, or every column of the train CSV but the reserved."""
    train_path, train_frame = tables["train"]
    for path, frame in tables.values():
        common.require_columns(NAME, path, frame, sorted(reserved))
    if classes is not None:
        names = [str(c) for c in classes]
        if not names:
            raise SpecError(f"{NAME}: option 'classes' is empty")
    else:
        names = [c for c in train_frame.columns if c not in reserved]
        if not names:
            raise DataError(
                f"{NAME}: {train_path}: no class column besides {', '.join(sorted(reserved))}"
            )
    for path, frame in tables.values():
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise DataError(
                f"{NAME}: {path}: missing class column{'s' * (len(missing) > 1)} "
                f"{', '.join(repr(c) for c in missing)}"
                + (f" (it is in {train_path.name})" if classes is None else "")
            )
        if classes is None:
            extra = [c for c in frame.columns if c not in reserved and c not in names]
            if extra:
                raise DataError(
                    f"{NAME}: {path}: column {extra[0]!r} is not in {train_path.name}; every "
                    "split needs the same class columns (or name them with the option 'classes')"
                )
    return names


def _label_classes(
    tables: dict[str, tuple[Path, Any]],
    classes: Sequence[str] | None,
    label_column: str,
    separator: str,
    negative_label: str | None,
) -> list[str]:
    for path, frame in tables.values():
        common.require_columns(NAME, path, frame, (label_column,))
    if classes is not None:
        names = [str(c) for c in classes]
        if not names:
            raise SpecError(f"{NAME}: option 'classes' is empty")
        if len(set(names)) != len(names):
            raise SpecError(f"{NAME}: option 'classes' names a class twice")
        return names
    found: set[str] = set()
    for _, frame in tables.values():
        for text in frame[label_column]:
            found.update(_tokens(text, separator, negative_label))
    if not found:
        path = tables["train"][0]
        raise DataError(f"{NAME}: {path}: column {label_column!r} holds no label at all")
    return sorted(found)


def _tokens(text: str, separator: str, negative_label: str | None) -> list[str]:
    tokens = [token.strip() for token in text.split(separator)]
    return [token for token in tokens if token and token != negative_label]


def _parse_label_lists(
    path: Path,
    frame: Any,
    label_column: str,
    separator: str,
    negative_label: str | None,
    class_names: list[str],
) -> np.ndarray:
    column = {name: k for k, name in enumerate(class_names)}
    labels = np.zeros((len(frame), len(class_names)), dtype=np.uint8)
    for row, text in enumerate(frame[label_column]):
        for token in _tokens(text, separator, negative_label):
            if token not in column:
                raise DataError(
                    f"{NAME}: {path}: unknown label {token!r} in column {label_column!r} on line "
                    f"{common.line_of(frame, row)} (classes: {', '.join(class_names)})"
                )
            labels[row, column[token]] = 1
    return labels


def _describe(tables: dict[str, tuple[Path, Any]]) -> str:
    files = sorted({str(path) for path, _ in tables.values()})
    return ", ".join(files)
