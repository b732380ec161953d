"""Small datasets in the real file formats, with real JPEG and PNG files, for the loader tests.

No dataset can be downloaded here, so each generator writes a few dozen images and the
annotation files exactly as the real releases lay them out: COCO 2017 instance JSON,
Sewer-ML CSVs, ChestX-ray14's ``Data_Entry_2017*.csv`` and list files, and user CSVs. Each
returns what it wrote (the truth the tests compare the loaders against).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

#: The 80 categories of COCO 2017 with their official ids.
COCO_CATEGORIES = {
    1: "person",
    2: "bicycle",
    3: "car",
    4: "motorcycle",
    5: "airplane",
    6: "bus",
    7: "train",
    8: "truck",
    9: "boat",
    10: "traffic light",
    11: "fire hydrant",
    13: "stop sign",
    14: "parking meter",
    15: "bench",
    16: "bird",
    17: "cat",
    18: "dog",
    19: "horse",
    20: "sheep",
    21: "cow",
    22: "elephant",
    23: "bear",
    24: "zebra",
    25: "giraffe",
    27: "backpack",
    28: "umbrella",
    31: "handbag",
    32: "tie",
    33: "suitcase",
    34: "frisbee",
    35: "skis",
    36: "snowboard",
    37: "sports ball",
    38: "kite",
    39: "baseball bat",
    40: "baseball glove",
    41: "skateboard",
    42: "surfboard",
    43: "tennis racket",
    44: "bottle",
    46: "wine glass",
    47: "cup",
    48: "fork",
    49: "knife",
    50: "spoon",
    51: "bowl",
    52: "banana",
    53: "apple",
    54: "sandwich",
    55: "orange",
    56: "broccoli",
    57: "carrot",
    58: "hot dog",
    59: "pizza",
    60: "donut",
    61: "cake",
    62: "chair",
    63: "couch",
    64: "potted plant",
    65: "bed",
    67: "dining table",
    70: "toilet",
    72: "tv",
    73: "laptop",
    74: "mouse",
    75: "remote",
    76: "keyboard",
    77: "cell phone",
    78: "microwave",
    79: "oven",
    80: "toaster",
    81: "sink",
    82: "refrigerator",
    84: "book",
    85: "clock",
    86: "vase",
    87: "scissors",
    88: "teddy bear",
    89: "hair drier",
    90: "toothbrush",
}
SEWER_CLASSES = (
    *("RB", "OB", "PF", "DE", "FS", "IS", "RO", "IN", "AF"),
    *("BE", "FO", "GR", "PH", "PB", "OS", "OP", "OK"),
)
CHEST_FINDINGS = (
    *("Infiltration", "Effusion", "Atelectasis", "Nodule", "Mass", "Pneumothorax"),
    *("Consolidation", "Pleural_Thickening", "Cardiomegaly", "Emphysema", "Edema"),
    *("Fibrosis", "Pneumonia", "Hernia"),
)
CHEST_HEADER = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
)


# ------------------------------------------------------------------------------ image files


def image_pixels(rng: np.random.Generator, size: tuple[int, int], channels: int) -> np.ndarray:
    """A few flat-coloured blocks: compresses like a photo, not like noise."""
    width, height = size
    blocks = rng.integers(0, 256, size=(4, 4, channels), dtype=np.uint8)
    tiled = np.kron(blocks, np.ones((-(-height // 4), -(-width // 4), 1), dtype=np.uint8))
    pixels = tiled[:height, :width]
    return pixels[:, :, 0] if channels == 1 else pixels


def write_jpeg(path: Path, rng: np.random.Generator, size: tuple[int, int] = (48, 36)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_pixels(rng, size, 3), "RGB").save(path, quality=90)


def write_png(
    path: Path, rng: np.random.Generator, size: tuple[int, int] = (40, 40), mode: str = "L"
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        pixels = image_pixels(rng, size, 1).astype(np.uint16) * 257
        Image.fromarray(pixels).save(path)  # uint16: mode I;16
        return
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    Image.fromarray(image_pixels(rng, size, channels), mode).save(path)


def corrupt(path: Path) -> None:
    """Keep the first bytes of the file (a valid header) and cut the rest: a truncated image."""
    data = path.read_bytes()
    path.write_bytes(data[: max(16, len(data) // 3)])


def not_an_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image\n")


def touch_later(path: Path, seconds: float = 10.0) -> None:
    """Change a file's modification time, as an edit would."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + int(seconds * 1e9)))


# ------------------------------------------------------------------------------------- COCO


@dataclass
class CocoFixture:
    root: Path
    #: image id → names of the categories annotated on it (all, before any drop).
    truth: dict[int, set[str]] = field(default_factory=dict)
    #: image id → split ("train2017"/"val2017" for the official layout, else train/val/test).
    part: dict[int, str] = field(default_factory=dict)

    @property
    def annotations(self) -> Path:
        return self.root / "annotations"


def _coco_file(
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    categories: dict[int, str],
) -> dict[str, Any]:
    return {
        "info": {"description": "mlcbench test fixture"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": cid, "name": name, "supercategory": "thing"}
            for cid, name in sorted(categories.items())
        ],
    }


def _annotation(ann_id: int, image_id: int, category_id: int) -> dict[str, Any]:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [1.0, 2.0, 10.0, 8.0],
        "area": 80.0,
        "iscrowd": 0,
        "segmentation": [[1.0, 2.0, 11.0, 2.0, 11.0, 10.0]],
    }


def make_coco_2017(root: Path, *, train_images: int = 40, val_images: int = 20) -> CocoFixture:
    """The official COCO 2017 layout: annotations/instances_{train,val}2017.json and the JPEGs
    in train2017/ and val2017/, with all 80 categories declared.

    Images come in kinds: no annotation at all, only dropped categories (person, car, …),
    kept categories only, and a mix (whose first annotation is a dropped category).
    """
    rng = np.random.default_rng(7)
    fixture = CocoFixture(root)
    kept = [17, 18, 16, 44, 62, 72]  # cat, dog, bird, bottle, chair, tv
    dropped = [1, 3, 19, 47]  # person, car, horse, cup
    next_image, next_annotation = 1000, 1
    for part, count in (("train2017", train_images), ("val2017", val_images)):
        images, annotations = [], []
        for k in range(count):
            image_id = next_image
            next_image += 7
            file_name = f"{image_id:012d}.jpg"
            write_jpeg(root / part / file_name, rng)
            images.append({"id": image_id, "file_name": file_name, "width": 48, "height": 36})
            kind = k % 4
            if kind == 0:
                categories: list[int] = []
            elif kind == 1:
                categories = [dropped[k % len(dropped)]]
            elif kind == 2:
                categories = [kept[k % len(kept)], kept[(k + 1) % len(kept)]]
            else:
                categories = [dropped[k % len(dropped)], kept[k % len(kept)]]
            for category in categories:
                annotations.append(_annotation(next_annotation, image_id, category))
                next_annotation += 1
            fixture.truth[image_id] = {COCO_CATEGORIES[c] for c in categories}
            fixture.part[image_id] = part
        write_json(
            root / "annotations" / f"instances_{part}.json",
            _coco_file(images, annotations, COCO_CATEGORIES),
        )
    return fixture


#: Categories of the small prepared COCO fixture (ids as in COCO).
SMALL_COCO_CATEGORIES = {1: "person", 16: "bird", 17: "cat", 18: "dog", 44: "bottle"}


def make_coco_splits(root: Path, *, per_split: Sequence[int] = (24, 10, 10)) -> CocoFixture:
    """A prepared COCO: annotations/instances_{train,val,test}.json and images/<split>/*.jpg.

    Every fourth image has no annotation at all; every fourth has only a person.
    """
    rng = np.random.default_rng(11)
    fixture = CocoFixture(root)
    cycle = [[], [1], [17, 44], [16], [18, 17, 1], [44]]
    next_image, next_annotation = 1, 1
    for split, count in zip(("train", "val", "test"), per_split, strict=True):
        images, annotations = [], []
        for k in range(count):
            image_id = next_image
            next_image += 1
            file_name = f"{split}/{image_id:06d}.jpg"
            write_jpeg(root / "images" / file_name, rng, size=(40 + k % 3 * 8, 30))
            images.append({"id": image_id, "file_name": file_name, "width": 40, "height": 30})
            categories = cycle[k % len(cycle)]
            for category in categories:
                annotations.append(_annotation(next_annotation, image_id, category))
                next_annotation += 1
            fixture.truth[image_id] = {SMALL_COCO_CATEGORIES[c] for c in categories}
            fixture.part[image_id] = split
        write_json(
            root / "annotations" / f"instances_{split}.json",
            _coco_file(images, annotations, SMALL_COCO_CATEGORIES),
        )
    return fixture


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")


# --------------------------------------------------------------------------------- Sewer-ML


@dataclass
class SewerFixture:
    root: Path
    #: split → file name → set of defect codes.
    truth: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    @property
    def annotations(self) -> Path:
        return self.root / "annotations"

    @property
    def images(self) -> Path:
        return self.root / "images"


def make_sewerml(
    root: Path, *, train_images: int = 30, val_images: int = 12, test_labels: bool = False
) -> SewerFixture:
    """Sewer-ML: SewerML_{Train,Val}.csv (Filename, 17 codes, Defect, and an extra column) and
    the JPEGs in images/Train and images/Val; about two thirds of the images are normal."""
    rng = np.random.default_rng(3)
    fixture = SewerFixture(root)
    counts = {"Train": train_images, "Val": val_images}
    if test_labels:
        counts["Test"] = val_images
    for part, count in counts.items():
        rows = []
        truth: dict[str, set[str]] = {}
        for k in range(count):
            name = f"{part.lower()}_{k:05d}.png" if k % 5 == 4 else f"{part.lower()}_{k:05d}.jpg"
            path = root / "images" / part / name
            if name.endswith(".png"):
                write_png(path, rng, mode="RGB")
            else:
                write_jpeg(path, rng)
            codes = set() if k % 3 else {SEWER_CLASSES[k % 17], SEWER_CLASSES[(k * 5) % 17]}
            truth[name] = codes
            rows.append(
                {
                    "Filename": name,
                    **{code: int(code in codes) for code in SEWER_CLASSES},
                    "Defect": int(bool(codes)),
                    "WaterLevel": 10 * (k % 4),
                }
            )
        fixture.truth[part.lower()] = truth
        write_csv(root / "annotations" / f"SewerML_{part}.csv", rows)
    return fixture


def write_csv(path: Path, rows: list[dict[str, Any]], header: Sequence[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(header or rows[0])
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(column, "") for column in columns])


def rewrite_csv_cell(path: Path, line: int, column: str, value: str) -> None:
    """Set one cell of a CSV (line 1 is the header)."""
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    rows[line - 1][rows[0].index(column)] = value
    with path.open("w", newline="", encoding="utf-8") as stream:
        csv.writer(stream).writerows(rows)


def drop_csv_column(path: Path, column: str) -> None:
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    index = rows[0].index(column)
    with path.open("w", newline="", encoding="utf-8") as stream:
        csv.writer(stream).writerows([row[:index] + row[index + 1 :] for row in rows])


# ----------------------------------------------------------------------------- ChestX-ray14


@dataclass
class ChestFixture:
    root: Path
    #: image name → findings (empty for "No Finding").
    truth: dict[str, set[str]] = field(default_factory=dict)
    patient: dict[str, str] = field(default_factory=dict)
    test_list: list[str] = field(default_factory=list)


def make_chestxray14(root: Path, *, patients: int = 16) -> ChestFixture:
    """ChestX-ray14: Data_Entry_2017_v2020.csv with the release's columns, train_val_list.txt
    and test_list.txt split by patient, and grayscale PNGs in images_001/images and
    images_002/images (one RGBA and one 16-bit image among them, as in the release)."""
    rng = np.random.default_rng(5)
    fixture = ChestFixture(root)
    rows = []
    number = 0
    for patient in range(1, patients + 1):
        for follow_up in range(1 + patient % 3):
            name = f"{patient:08d}_{follow_up:03d}.png"
            folder = "images_001" if number % 2 == 0 else "images_002"
            mode = "RGBA" if number == 5 else ("I;16" if number == 6 else "L")
            write_png(root / folder / "images" / name, rng, mode=mode)
            if number % 3 == 0:
                findings: list[str] = []
            else:
                findings = [CHEST_FINDINGS[number % 14], CHEST_FINDINGS[(number * 3) % 14]]
                findings = sorted(set(findings))
            fixture.truth[name] = set(findings)
            # Patient IDs are written without leading zeros, as in the release.
            fixture.patient[name] = str(patient)
            rows.append(
                {
                    "Image Index": name,
                    "Finding Labels": "|".join(findings) or "No Finding",
                    "Follow-up #": follow_up,
                    "Patient ID": patient,
                    "Patient Age": 40 + patient,
                    "Patient Gender": "MF"[patient % 2],
                    "View Position": "PA",
                    "OriginalImage[Width": 2500,
                    "Height]": 2048,
                    "OriginalImagePixelSpacing[x": 0.143,
                    "y]": 0.143,
                }
            )
            number += 1
    write_csv(root / "Data_Entry_2017_v2020.csv", rows, CHEST_HEADER)
    test_patients = {p for p in range(1, patients + 1) if p % 4 == 0}
    fixture.test_list = [r["Image Index"] for r in rows if r["Patient ID"] in test_patients]
    train_val = [r["Image Index"] for r in rows if r["Patient ID"] not in test_patients]
    (root / "test_list.txt").write_text("\n".join(fixture.test_list) + "\n", encoding="utf-8")
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n", encoding="utf-8")
    return fixture


# ------------------------------------------------------------------------------ user CSVs

USER_CLASSES = ("crack", "root", "deposit")


@dataclass
class UserFixture:
    root: Path
    #: split → image path as written → labels present.
    truth: dict[str, dict[str, set[str]]] = field(default_factory=dict)


def make_user_csvs(
    root: Path, *, per_split: Sequence[int] = (32, 12, 12), layout: str = "columns"
) -> UserFixture:
    """A defect-inspection team's data: images/<part>/*.jpg and either train.csv, val.csv,
    test.csv with one 0/1 column per class (``layout="columns"``) or one data.csv with a
    split column and a pipe-separated label column (``layout="table"``). About 60% of the
    images are negatives."""
    rng = np.random.default_rng(13)
    fixture = UserFixture(root)
    table_rows = []
    for split, count in zip(("train", "val", "test"), per_split, strict=True):
        rows = []
        truth: dict[str, set[str]] = {}
        for k in range(count):
            path = f"images/{split}/{split}_{k:04d}.jpg"
            write_jpeg(root / path, rng, size=(40, 40))
            present = set() if k % 5 in (0, 2, 4) else {USER_CLASSES[k % 3]}
            if k % 10 == 3:
                present.add(USER_CLASSES[(k + 1) % 3])
            truth[path] = present
            rows.append({"image": path, **{c: int(c in present) for c in USER_CLASSES}})
            table_rows.append({"image": path, "split": split, "labels": "|".join(sorted(present))})
        fixture.truth[split] = truth
        if layout == "columns":
            write_csv(root / f"{split}.csv", rows)
    if layout == "table":
        write_csv(root / "data.csv", table_rows)
    return fixture


# --------------------------------------------------------------------------------- fixtures


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the decoded-image cache at a fresh folder, never the user's ~/.cache."""
    folder = tmp_path / "image-cache"
    monkeypatch.setenv("MLCBENCH_CACHE_DIR", str(folder))
    yield folder


def cache_folders(cache_root: Path) -> list[Path]:
    """The finished caches under a cache root."""
    if not cache_root.is_dir():
        return []
    return sorted(p for p in cache_root.iterdir() if (p / "index.json").is_file())


#: The smallest CNN that still learns negdigits: end-to-end tests train it in seconds.
TINY_SMALLCNN = {"name": "smallcnn", "width": 8, "depth": 2}


def tiny_negdigits(train_images: int, held_out_images: int) -> dict[str, object]:
    """A negdigits entry small enough for end-to-end tests (24 px, at most two digits);
    ``held_out_images`` each for val and test."""
    return {
        "name": "negdigits",
        "train_images": train_images,
        "val_images": held_out_images,
        "test_images": held_out_images,
        "image_size": 24,
        "digits_per_image": 2,
    }
