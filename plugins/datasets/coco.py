"""coco: COCO instance annotations as multi-label classification (the paper's modified COCO).

The ``annotations`` folder holds ``instances_train.json``, ``instances_val.json`` and
``instances_test.json`` in the COCO format (``mlcbench data prepare-coco`` writes them from
the official COCO 2017 files). Each image's labels are the categories of its annotations;
an image with no annotation left — because it never had one, or because every category it
showed was dropped — is a negative and stays in its split. Classes are the categories in
order of category id.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mlcbench_plugins.datasets import common
from mlcbench_plugins.datasets.common import Augmentation

from mlcbench.data import SPLITS, DataError, FileSplit, MultiLabelDataset, image_file_dataset
from mlcbench.errors import SpecError
from mlcbench.hookspecs import RegisterDataset, hookimpl

NAME = "coco"
SPLIT_FILES = {split: f"instances_{split}.json" for split in SPLITS}
#: Normalisation of the modified COCO (DESIGN §9), in [0, 1] units.
MEAN = (0.470, 0.447, 0.408)
STD = (0.233, 0.228, 0.231)


@hookimpl
def mlcbench_register_datasets(register: RegisterDataset) -> None:
    register(NAME, coco, runtime_options=common.RUNTIME_OPTIONS)


def coco(
    *,
    annotations: str,
    images: str,
    drop_categories: Sequence[str] = (),
    keep_categories: Sequence[str] = (),
    image_size: int = 224,
    augmentations: Sequence[Augmentation] = ("hflip", "color_jitter"),
    cache: bool = True,
    skip_unreadable: bool = False,
) -> MultiLabelDataset:
    """COCO instance annotations (the paper's modified COCO); unannotated images are negatives.

    Options:
        annotations: Folder holding instances_train.json, instances_val.json and
            instances_test.json (see ``mlcbench data prepare-coco``).
        images: Folder the images' ``file_name`` entries are relative to.
        drop_categories: Category names to remove; images left with no category become
            negatives.
        keep_categories: Category names to keep (every other one is dropped); not together
            with drop_categories.
        image_size: Side in pixels of the square RGB images (squashed, not cropped).
        augmentations: Batch augmentations during training: hflip, color_jitter, rotate5.
        cache: Decode every image once into the shared decoded-image cache (false: decode
            the files on every read).
        skip_unreadable: Leave images that cannot be decoded out (counted in the manifest)
            instead of failing.
    """
    common.check_image_size(NAME, image_size)
    folder = common.folder(NAME, "annotations", annotations)
    image_folder = common.folder(NAME, "images", images)
    if drop_categories and keep_categories:
        raise SpecError(f"{NAME}: give drop_categories or keep_categories, not both")
    loaded = {split: load_instances(folder / SPLIT_FILES[split]) for split in SPLITS}
    categories = _common_categories(loaded, folder)
    names = [categories[cid] for cid in sorted(categories)]
    for option, chosen in (
        ("drop_categories", drop_categories),
        ("keep_categories", keep_categories),
    ):
        for name in chosen:
            if name not in names:
                raise common.unknown_name_error(NAME, option, name, names)
    if keep_categories:
        kept = [cid for cid in sorted(categories) if categories[cid] in set(keep_categories)]
    else:
        kept = [cid for cid in sorted(categories) if categories[cid] not in set(drop_categories)]
    if not kept:
        raise SpecError(f"{NAME}: option 'drop_categories' drops every category")
    column = {cid: k for k, cid in enumerate(kept)}
    splits: dict[str, FileSplit] = {}
    owner: dict[Any, str] = {}
    for split, data in loaded.items():
        path = folder / SPLIT_FILES[split]
        index = _index(data)
        image_ids = index.getImgIds()
        for image_id in image_ids:
            if image_id in owner:
                raise DataError(
                    f"{NAME}: {path}: image_id {image_id} is also in "
                    f"{SPLIT_FILES[owner[image_id]]}; the splits must not share images"
                )
            owner[image_id] = split
        labels = np.zeros((len(image_ids), len(kept)), dtype=np.uint8)
        for row, image_id in enumerate(image_ids):
            for annotation in index.imgToAnns.get(image_id, ()):
                k = column.get(annotation["category_id"])
                if k is not None:
                    labels[row, k] = 1
        splits[split] = FileSplit(
            image_ids=tuple(str(i) for i in image_ids),
            paths=[str(image_folder / index.imgs[i]["file_name"]) for i in image_ids],
            labels=labels,
            source=str(path),
        )
    dropped = len(categories) - len(kept)
    return image_file_dataset(
        NAME,
        [categories[cid] for cid in kept],
        splits,
        image_size=image_size,
        mean=MEAN,
        std=STD,
        augmentations=augmentations,
        notes=(
            f"COCO instances from {folder}: {len(kept)} classes"
            + (f", {dropped} categories dropped" if dropped else "")
            + "; images without a remaining annotation are negatives.",
        ),
        cache=cache,
        skip_unreadable=skip_unreadable,
        missing_hint="check the 'images' option (file_name entries are relative to it)",
    )


def load_instances(path: Path) -> dict[str, Any]:
    """One COCO instances file, its structure checked: a one-line DataError names a problem."""
    if not path.is_file():
        raise DataError(f"{NAME}: {path}: annotation file not found")
    try:
        with path.open(encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError) as error:
        raise DataError(
            f"{NAME}: {path}: not valid JSON ({' '.join(str(error).split())})"
        ) from None
    if not isinstance(data, dict):
        raise DataError(
            f"{NAME}: {path}: expected a COCO object with images, annotations, categories"
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{NAME}: {path}: missing the list {key!r} of a COCO instances file")
    categories: dict[Any, str] = {}
    for number, category in enumerate(data["categories"]):
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise DataError(f"{NAME}: {path}: categories[{number}] needs an 'id' and a 'name'")
        if category["id"] in categories:
            raise DataError(f"{NAME}: {path}: category id {category['id']} is declared twice")
        categories[category["id"]] = str(category["name"])
    if len(set(categories.values())) != len(categories):
        raise DataError(f"{NAME}: {path}: two categories share a name")
    image_ids: set[Any] = set()
    for number, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise DataError(f"{NAME}: {path}: images[{number}] needs an 'id' and a 'file_name'")
        if image["id"] in image_ids:
            raise DataError(f"{NAME}: {path}: image id {image['id']} is listed twice")
        image_ids.add(image["id"])
    for number, annotation in enumerate(data["annotations"]):
        if not isinstance(annotation, dict) or not {"image_id", "category_id"} <= set(annotation):
            raise DataError(
                f"{NAME}: {path}: annotations[{number}] needs an 'image_id' and a 'category_id'"
            )
        label = f"annotation {annotation.get('id', f'#{number}')}"
        if annotation["image_id"] not in image_ids:
            raise DataError(
                f"{NAME}: {path}: {label} is for image_id {annotation['image_id']}, which is not "
                "in the file's images"
            )
        if annotation["category_id"] not in categories:
            raise DataError(
                f"{NAME}: {path}: {label} has category_id {annotation['category_id']}, which is "
                "not in the file's categories"
            )
    return data


def _common_categories(loaded: dict[str, dict[str, Any]], folder: Path) -> dict[Any, str]:
    """The categories every split declares; a category missing from one split is an error."""
    declared = {
        split: {c["id"]: str(c["name"]) for c in data["categories"]}
        for split, data in loaded.items()
    }
    reference = declared["train"]
    for split in ("val", "test"):
        for this, other, where, missing_from in (
            (declared[split], reference, split, "train"),
            (reference, declared[split], "train", split),
        ):
            for cid, name in this.items():
                if other.get(cid) != name:
                    raise DataError(
                        f"{NAME}: {folder / SPLIT_FILES[where]}: category {name!r} (id {cid}) "
                        f"is not in {SPLIT_FILES[missing_from]}; every split must declare the "
                        "same categories"
                    )
    return reference


def _index(data: dict[str, Any]) -> Any:
    """pycocotools' index of one instances file (its progress prints kept out of the run)."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        index = COCO()
        index.dataset = data
        index.createIndex()
    return index
