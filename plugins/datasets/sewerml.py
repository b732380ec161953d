"""sewerml: the Sewer-ML sewer-inspection dataset (Haurum & Moeslund, CVPR 2021).

The ``annotations`` folder holds ``SewerML_Train.csv`` and ``SewerML_Val.csv`` (and, where
you have one, ``SewerML_Test.csv``) with the columns ``Filename``, the 17 defect codes and
``Defect``. An image without any defect ("Normal") is a negative. The test labels are not
public: when ``SewerML_Test.csv`` is absent or holds no labels, the val split doubles as the
held-out test split, and the dataset says so in its notes and manifest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from mlcbench_plugins.datasets import common
from mlcbench_plugins.datasets.common import Augmentation

from mlcbench.data import DataError, FileSplit, MultiLabelDataset, image_file_dataset
from mlcbench.errors import SpecError
from mlcbench.hookspecs import RegisterDataset, hookimpl
from mlcbench.metrics import SEWERML_CLASS_WEIGHTS

NAME = "sewerml"
#: The 17 defect classes, in the order of Sewer-ML's own evaluation.
CLASSES = (
    *("RB", "OB", "PF", "DE", "FS", "IS", "RO", "IN", "AF"),
    *("BE", "FO", "GR", "PH", "PB", "OS", "OP", "OK"),
)
#: Class-importance weights of Sewer-ML's CIW-F2 (DESIGN §6), defined once with the metrics.
CIW_WEIGHTS = SEWERML_CLASS_WEIGHTS
#: Normalisation of Sewer-ML (DESIGN §9), in [0, 1] units.
MEAN = (0.523, 0.453, 0.345)
STD = (0.210, 0.199, 0.154)
CSV_FILES = {"train": "SewerML_Train.csv", "val": "SewerML_Val.csv", "test": "SewerML_Test.csv"}
#: Where a split's images may sit below ``images``: a per-split folder, else ``images`` itself;
#: a file found in neither is looked up by name anywhere below ``images``.
IMAGE_FOLDERS = {
    "train": ("Train", "train"),
    "val": ("Val", "val", "Valid", "valid", "Validation", "validation"),
    "test": ("Test", "test"),
}
VAL_AS_TEST = (
    "Sewer-ML's test labels are not public: the test split is the val split "
    "(val-tuned thresholds are therefore tuned on the images they are scored on)"
)

log = logging.getLogger(__name__)


@hookimpl
def mlcbench_register_datasets(register: RegisterDataset) -> None:
    register(NAME, sewerml, runtime_options=common.RUNTIME_OPTIONS)


def sewerml(
    *,
    annotations: str,
    images: str,
    image_size: int = 224,
    augmentations: Sequence[Augmentation] = ("hflip", "color_jitter"),
    cache: bool = True,
    skip_unreadable: bool = False,
) -> MultiLabelDataset:
    """Sewer-ML: 17 sewer defect classes, most images normal; CIW-F2 weights included.

    Options:
        annotations: Folder with SewerML_Train.csv, SewerML_Val.csv and optionally
            SewerML_Test.csv (with labels).
        images: Folder of the images: a split's images are looked up in its subfolder
            (Train, Val, Test) when that exists, else in the folder itself, else by file name
            anywhere below it.
        image_size: Side in pixels of the square RGB images (squashed, not cropped).
        augmentations: Batch augmentations during training: hflip, color_jitter, rotate5.
        cache: Decode every image once into the shared decoded-image cache (false: decode
            the files on every read).
        skip_unreadable: Leave images that cannot be decoded out (counted in the manifest)
            instead of failing.
    """
    common.check_image_size(NAME, image_size)
    folder = common.folder(NAME, "annotations", annotations)
    image_root = common.folder(NAME, "images", images)
    notes: list[str] = []
    splits: dict[str, FileSplit] = {}
    for split in ("train", "val"):
        splits[split] = _read_split(folder / CSV_FILES[split], split, image_root, notes)
    test_csv = folder / CSV_FILES["test"]
    if test_csv.is_file() and _has_labels(test_csv):
        splits["test"] = _read_split(test_csv, "test", image_root, notes)
    else:
        val = splits["val"]
        splits["test"] = FileSplit(val.image_ids, val.paths, val.labels, val.source, VAL_AS_TEST)
        notes.append(VAL_AS_TEST + ".")
        log.warning("sewerml: %s", VAL_AS_TEST)
    return image_file_dataset(
        NAME,
        CLASSES,
        splits,
        image_size=image_size,
        mean=MEAN,
        std=STD,
        augmentations=augmentations,
        class_weights=CIW_WEIGHTS,
        notes=tuple(notes),
        cache=cache,
        skip_unreadable=skip_unreadable,
        missing_hint="check the 'images' option (images sit in it or in its Train/Val/Test "
        "subfolders)",
    )


def _read_split(path: Path, split: str, image_root: Path, notes: list[str]) -> FileSplit:
    if not path.is_file():
        raise SpecError(f"{NAME}: option 'annotations': {path} does not exist")
    frame = common.read_csv(NAME, path, ("Filename", *CLASSES))
    names = [name.strip() for name in frame["Filename"]]
    if any(not name for name in names):
        line = names.index("") + 2
        raise DataError(f"{NAME}: {path}: empty Filename on line {line}")
    common.reject_duplicates(NAME, path, "Filename", names, frame)
    labels = common.binary_columns(NAME, path, frame, CLASSES)
    if "Defect" in frame.columns:
        defect = common.binary_columns(NAME, path, frame, ["Defect"])[:, 0]
        disagree = int((defect != labels.any(axis=1)).sum())
        if disagree:
            notes.append(
                f"{path.name}: the Defect column disagrees with the class columns on {disagree} "
                "rows; labels come from the class columns."
            )
    image_folder = next(
        (image_root / sub for sub in IMAGE_FOLDERS[split] if (image_root / sub).is_dir()),
        image_root,
    )
    paths = [str(image_folder / name) for name in names]
    if not all(os.path.isfile(p) for p in paths):  # another layout (e.g. unpacked archives)
        index = _index_below(image_root)
        paths = [index.get(name, p) for name, p in zip(names, paths, strict=True)]
    return FileSplit(
        image_ids=tuple(names),
        paths=paths,
        labels=np.asarray(labels, dtype=np.uint8),
        source=str(path),
    )


def _index_below(folder: Path) -> dict[str, str]:
    """File name → path of every file below ``folder`` (the first one where names repeat)."""
    index: dict[str, str] = {}
    for parent, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            index.setdefault(name, os.path.join(parent, name))
    return index


def _has_labels(path: Path) -> bool:
    """Whether a test CSV carries class columns (the public one lists file names only)."""
    return any(code in common.csv_header(NAME, path) for code in CLASSES)
