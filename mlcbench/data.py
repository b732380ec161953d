"""What a dataset plugin hands the runner: splits of uint8 images with 0/1 labels.

Images stay uint8 until they reach the accelerator; the training module normalises and
augments whole batches there, so loader workers only move bytes.

Datasets whose images are files (JPEG, PNG, …) build their splits with
:func:`image_file_dataset`: it checks every listed file up front, decodes each image once
into the decoded-image cache (:mod:`mlcbench.image_cache`) and hands out splits that read
from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mlcbench.errors import MlcbenchError, PluginError

SPLITS = ("train", "val", "test")
AUGMENTATIONS = frozenset({"hflip", "color_jitter", "rotate5"})
#: Skipped images a manifest lists by name (all are counted).
MANIFEST_SKIPPED_LISTED = 20


class DataError(MlcbenchError):
    """A dataset's files are missing, unreadable or inconsistent: the message names the file
    and the problem, in one line."""

    exit_code = 2


class InMemoryImages(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images already decoded into one uint8 tensor (N, C, H, W), labels (N, K)."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise PluginError("InMemoryImages expects a uint8 tensor of shape (N, C, H, W).")
        if len(images) != len(labels):
            raise PluginError(f"InMemoryImages got {len(images)} images but {len(labels)} labels.")
        self.images = images
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


@dataclass(frozen=True)
class Split:
    """One split: stable image ids, their 0/1 labels and a torch dataset of the images.

    ``images[i]`` yields ``(uint8 tensor (C, H, W), float tensor (K,))`` for ``image_ids[i]``.
    """

    image_ids: Sequence[str]
    labels: np.ndarray
    images: Dataset[tuple[torch.Tensor, torch.Tensor]]
    #: Images left out because they could not be read (``skip_unreadable``): "path: reason".
    skipped: tuple[str, ...] = ()
    #: One line on where the split comes from, when that is not obvious (shown in manifests).
    note: str = ""

    @property
    def negatives(self) -> int:
        """Images that carry no label at all."""
        return int((self.labels.sum(axis=1) == 0).sum())

    def class_counts(self) -> np.ndarray:
        return self.labels.sum(axis=0).astype(np.int64)


@dataclass(frozen=True)
class MultiLabelDataset:
    """A dataset plugin's product: class names, normalisation, and the train/val/test splits."""

    name: str
    class_names: tuple[str, ...]
    splits: Mapping[str, Split]
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: Batch augmentations applied on the device during training (see ``AUGMENTATIONS``).
    augmentations: tuple[str, ...] = ()
    #: Class-importance weights (e.g. Sewer-ML's CIW), by class name, when the dataset defines them.
    class_weights: Mapping[str, float] | None = None
    #: True when every image already sits in memory, so extra loader workers only cost time.
    in_memory: bool = False
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise PluginError(f"Dataset {self.name!r} has no {', '.join(missing)} split.")
        for split_name, split in self.splits.items():
            labels = split.labels
            if labels.ndim != 2 or labels.shape[1] != len(self.class_names):
                raise PluginError(
                    f"Dataset {self.name!r}, split {split_name!r}: labels have shape "
                    f"{labels.shape}, expected (N, {len(self.class_names)})."
                )
            if len(split.image_ids) != len(labels):
                raise PluginError(
                    f"Dataset {self.name!r}, split {split_name!r}: {len(split.image_ids)} image "
                    f"ids for {len(labels)} label rows."
                )
            if not np.isin(labels, (0, 1)).all():
                raise PluginError(f"Dataset {self.name!r}, split {split_name!r}: labels not 0/1.")
        unknown = set(self.augmentations) - AUGMENTATIONS
        if unknown:
            raise PluginError(
                f"Dataset {self.name!r} asks for unknown augmentations {sorted(unknown)}; "
                f"known: {sorted(AUGMENTATIONS)}."
            )
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise PluginError(f"Dataset {self.name!r}: mean/std need one value per channel.")

    def manifest(self) -> dict[str, Any]:
        """Images, negatives and per-class counts for every split.

        A split that skipped unreadable images also has ``skipped`` (the count) and
        ``skipped_images`` (the first few, "path: reason"); a split with a note has ``note``.
        """
        manifest: dict[str, Any] = {}
        for split_name, split in self.splits.items():
            facts: dict[str, Any] = {
                "images": len(split.image_ids),
                "negatives": split.negatives,
                "class_counts": dict(
                    zip(self.class_names, (int(c) for c in split.class_counts()), strict=True)
                ),
            }
            if split.skipped:
                facts["skipped"] = len(split.skipped)
                facts["skipped_images"] = list(split.skipped[:MANIFEST_SKIPPED_LISTED])
            if split.note:
                facts["note"] = split.note
            manifest[split_name] = facts
        return manifest


@dataclass(frozen=True)
class FileSplit:
    """One split of a file-backed dataset, as its plugin read it from annotation files."""

    image_ids: Sequence[str]
    #: The image file of each id (absolute, or relative to the working directory).
    paths: Sequence[str]
    #: 0/1 labels (N, K).
    labels: np.ndarray
    #: The file that lists this split (annotation JSON, CSV), named in messages about it.
    source: str = ""
    note: str = ""


def image_file_dataset(
    name: str,
    class_names: Sequence[str],
    splits: Mapping[str, FileSplit],
    *,
    image_size: int,
    grayscale: bool = False,
    mean: Sequence[float],
    std: Sequence[float],
    augmentations: Sequence[str] = (),
    class_weights: Mapping[str, float] | None = None,
    notes: Sequence[str] = (),
    cache: bool = True,
    skip_unreadable: bool = False,
    missing_hint: str = "",
) -> MultiLabelDataset:
    """A :class:`MultiLabelDataset` whose images are files, every file checked up front.

    A listed file that does not exist fails at once, naming the file and the list it is in
    (``missing_hint`` says which option to check). With ``cache`` every image is decoded and
    resized once into the shared decoded-image cache, which finds every corrupt file before
    training starts; without it only image headers are checked up front and images are
    decoded again each time they are read. A file that cannot be decoded fails with its path,
    or, with ``skip_unreadable``, is left out of its split and counted in the manifest.
    Images are squashed to ``image_size`` × ``image_size`` (no crop), RGB or grayscale.
    """
    from mlcbench import image_cache

    for split_name, split in splits.items():
        if not (len(split.image_ids) == len(split.paths) == len(split.labels)):
            raise PluginError(
                f"Dataset {name!r}, split {split_name!r}: {len(split.image_ids)} ids, "
                f"{len(split.paths)} paths and {len(split.labels)} label rows."
            )
    image_format = image_cache.ImageFormat(image_size, "L" if grayscale else "RGB")
    # Absolute paths: the cache key and every worker process then agree, whatever the cwd.
    split_paths = {
        split_name: [os.path.abspath(path) for path in split.paths]
        for split_name, split in splits.items()
    }
    files = sorted({path for paths in split_paths.values() for path in paths})
    stats = image_cache.stat_files(files)
    _reject_missing_files(
        name, splits, split_paths, dict(zip(files, stats, strict=True)), missing_hint
    )
    store: image_cache.ImageCache | None = None
    decode = image_cache.decoding_enabled()
    unreadable: dict[str, str] = {}
    if decode and cache:
        try:
            store = image_cache.load_or_build(
                files, stats, image_format, fail_fast=not skip_unreadable
            )
        except image_cache.UnreadableFile as error:
            raise _unreadable_error(name, error.path, error.reason) from None
        unreadable = {files[row]: reason for row, reason in store.unreadable.items()}
    elif decode:
        unreadable = image_cache.check_headers(files, fail_fast=not skip_unreadable)
    if unreadable and not skip_unreadable:
        path = min(unreadable)
        raise _unreadable_error(name, path, unreadable[path])
    row_of = {path: row for row, path in enumerate(files)}
    built: dict[str, Split] = {}
    for split_name, split in splits.items():
        paths = split_paths[split_name]
        keep = np.array([path not in unreadable for path in paths], dtype=bool)
        if len(paths) and not keep.any():
            raise DataError(
                f"{name}: none of the {len(paths)} images of the {split_name} split "
                f"({split.source or 'its list'}) could be read, e.g. {paths[0]}: "
                f"{unreadable[paths[0]]}"
            )
        labels = np.asarray(split.labels)[keep]
        kept_paths = [path for path, ok in zip(paths, keep, strict=True) if ok]
        images: Dataset[tuple[torch.Tensor, torch.Tensor]]
        if store is not None:
            rows = np.array([row_of[path] for path in kept_paths], dtype=np.int64)
            images = image_cache.CachedImages(store, rows, labels)
        else:
            images = image_cache.ImageFiles(kept_paths, image_format, labels)
        built[split_name] = Split(
            image_ids=tuple(i for i, ok in zip(split.image_ids, keep, strict=True) if ok),
            labels=labels,
            images=images,
            skipped=tuple(f"{path}: {unreadable[path]}" for path in paths if path in unreadable),
            note=split.note,
        )
    if store is not None:
        where = f"decoded once into the image cache {store.directory}"
    elif decode:
        where = "decoded from their files on every read (cache off)"
    else:
        where = "not decoded yet (unreadable files are not looked for)"
    extra = [f"{len(files)} image files, {image_size}x{image_size} {image_format.mode}, {where}."]
    if unreadable:
        extra.append(f"{len(unreadable)} unreadable images skipped (skip_unreadable).")
    return MultiLabelDataset(
        name=name,
        class_names=tuple(class_names),
        splits=built,
        in_channels=image_format.channels,
        image_size=image_size,
        mean=tuple(mean),
        std=tuple(std),
        augmentations=tuple(augmentations),
        class_weights=class_weights,
        in_memory=False,
        notes=(*notes, *extra),
    )


def split_counts(total: int, shares: Sequence[float]) -> np.ndarray:
    """Integer counts summing to ``total`` in proportion to ``shares``, by largest remainder
    (ties go to the earlier share: train before val before test)."""
    exact = np.asarray(shares, dtype=np.float64) / float(sum(shares)) * total
    counts = np.floor(exact).astype(np.int64)
    leftover = total - int(counts.sum())
    order = np.lexsort((np.arange(len(exact)), -(exact - counts)))
    counts[order[:leftover]] += 1
    return counts


def _reject_missing_files(
    name: str,
    splits: Mapping[str, FileSplit],
    split_paths: Mapping[str, list[str]],
    stats: Mapping[str, Any],
    hint: str,
) -> None:
    for split_name, split in splits.items():
        missing = [path for path in split_paths[split_name] if stats[path] is None]
        if missing:
            listed = f" (listed in {split.source})" if split.source else ""
            more = f"; {len(missing)} of {len(split.paths)} listed images are missing" * (
                len(missing) > 1
            )
            advice = f"; {hint}" if hint else ""
            raise DataError(f"{name}: {missing[0]}: image file not found{listed}{more}{advice}")


def _unreadable_error(name: str, path: str, reason: str) -> DataError:
    return DataError(
        f"{name}: {path}: cannot decode image ({reason}); replace or remove the file, "
        "or set skip_unreadable: true to leave unreadable images out"
    )
