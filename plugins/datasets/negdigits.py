"""negdigits: the embedded default dataset, built from scikit-learn's real handwritten digits.

Each scene is an ``image_size`` x ``image_size`` grayscale image holding one to
``digits_per_image`` of the 1,797 8x8 digits that ship inside scikit-learn, pasted at random
non-overlapping positions and each upscaled by a random factor between 1 and ``max_scale``.
Some digit values are the classes; the others are clutter. A scene holding only clutter is a
negative (no label), the same construction as the paper's modified COCO. Train, val and test
draw from disjoint source digits, and everything is deterministic from ``seed``.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlcbench.data import SPLITS, InMemoryImages, MultiLabelDataset, Split
from mlcbench.errors import SpecError
from mlcbench.hookspecs import RegisterDataset, hookimpl

NAME = "negdigits"
DIGIT_SIZE = 8
DIGIT_VALUES = 10
#: Share of each digit value's source images that go to train, val and test.
SOURCE_SHARES = {"train": 0.6, "val": 0.2, "test": 0.2}
DEFAULT_CLASS_DIGITS = (0, 1, 2, 3, 4)
#: Pixel mean and std in [0, 1] units, measured on the default options (seeds 0-4, all splits).
#: Fixed rather than recomputed so that every run of a benchmark normalises identically.
MEAN = (0.258,)
STD = (0.203,)
#: Random corners tried per digit before its free positions are enumerated.
POSITION_TRIES = 24

Box = tuple[int, int, int]  # top, left, side of a pasted digit


@hookimpl
def mlcbench_register_datasets(register: RegisterDataset) -> None:
    register(NAME, negdigits)


def negdigits(
    *,
    seed: int = 0,
    image_size: int = 32,
    class_digits: list[int] | tuple[int, ...] = DEFAULT_CLASS_DIGITS,
    digits_per_image: int = 3,
    max_scale: float = 2.0,
    negative_share: float = 0.65,
    noise: float = 0.4,
    train_images: int = 2000,
    val_images: int = 1000,
    test_images: int = 1000,
) -> MultiLabelDataset:
    """Multi-label scenes of handwritten digits where most images carry no label.

    The defaults are tuned to leave room between losses: the quickstart's small CNN reaches
    a test mAP of about 0.8 in 8 epochs, not a saturated 0.99.

    Options:
        seed: Drives everything: which source digits each split uses and every scene.
        image_size: Side of the square grayscale scenes in pixels; must hold
            ``digits_per_image`` digits of 8x8 pixels side by side.
        class_digits: Digit values that are classes (class names ``digit_<value>``, in this
            order). The remaining values are clutter, so at least one value must be left out.
        digits_per_image: Most digits in one scene; each scene holds 1..this many (uniformly).
        max_scale: Each digit is upscaled by a random factor in [1, max_scale] (nearest or
            bilinear, at random), capped at the image size; at most 4. 1 keeps every digit
            at 8x8. A digit that finds no room at its size is shrunk until it fits.
        negative_share: Share of each split's scenes that hold clutter digits only, in [0, 1).
            Exact up to rounding. Positive scenes hold at least one class digit; their other
            digits are drawn from all ten values.
        noise: Brightness of the uniform background noise, as a share of full white, in [0, 1].
        train_images: Scenes in the train split.
        val_images: Scenes in the val split.
        test_images: Scenes in the test split.
    """
    scenes = generate_scenes(
        seed=seed,
        image_size=image_size,
        class_digits=class_digits,
        digits_per_image=digits_per_image,
        max_scale=max_scale,
        negative_share=negative_share,
        noise=noise,
        train_images=train_images,
        val_images=val_images,
        test_images=test_images,
    )
    splits = {
        split_name: Split(
            image_ids=tuple(f"{split_name}_{i:06d}" for i in range(len(split.labels))),
            labels=split.labels,
            images=InMemoryImages(torch.from_numpy(split.images[:, None].copy()), split.labels),
        )
        for split_name, split in scenes.items()
    }
    classes = tuple(int(d) for d in class_digits)
    clutter = [d for d in range(DIGIT_VALUES) if d not in classes]
    return MultiLabelDataset(
        name=NAME,
        class_names=tuple(f"digit_{d}" for d in classes),
        splits=splits,
        in_channels=1,
        image_size=image_size,
        mean=MEAN,
        std=STD,
        augmentations=(),
        in_memory=True,
        notes=(
            f"Scenes of 1-{digits_per_image} scikit-learn handwritten digits; clutter digits "
            f"{', '.join(map(str, clutter))}; train, val and test use disjoint source digits.",
        ),
    )


@dataclass(frozen=True)
class Placement:
    """One source digit pasted into a scene."""

    source_index: int  # row in scikit-learn's digits
    digit: int
    top: int
    left: int
    size: int  # side in pixels after upscaling
    bilinear: bool


@dataclass(frozen=True)
class Scenes:
    """One generated split: uint8 images (N, H, W), 0/1 labels (N, C) and what each holds."""

    images: np.ndarray
    labels: np.ndarray
    placements: tuple[tuple[Placement, ...], ...]


def generate_scenes(
    *,
    seed: int,
    image_size: int,
    class_digits: list[int] | tuple[int, ...],
    digits_per_image: int,
    max_scale: float,
    negative_share: float,
    noise: float,
    train_images: int,
    val_images: int,
    test_images: int,
) -> dict[str, Scenes]:
    """The scenes behind :func:`negdigits`, with their placements, split by split."""
    classes = _validated_class_digits(class_digits)
    _check_int("seed", seed, minimum=0)
    _check_int("digits_per_image", digits_per_image, minimum=1)
    _check_int("image_size", image_size, minimum=DIGIT_SIZE)
    cells = (image_size // DIGIT_SIZE) ** 2
    if cells < digits_per_image:
        needed = DIGIT_SIZE * int(np.ceil(np.sqrt(digits_per_image)))
        raise SpecError(
            f"{NAME}: option 'image_size' ({image_size}) is too small for digits_per_image "
            f"({digits_per_image}) non-overlapping 8x8 digits; use at least {needed}."
        )
    _check_number("max_scale", max_scale, low=1.0, high=4.0, high_open=False)
    _check_number("negative_share", negative_share, low=0.0, high=1.0, high_open=True)
    _check_number("noise", noise, low=0.0, high=1.0, high_open=False)
    sizes = {"train": train_images, "val": val_images, "test": test_images}
    for split_name, count in sizes.items():
        _check_int(f"{split_name}_images", count, minimum=1)

    partition = source_partition(seed)
    return {
        split_name: _generate_split(
            pool=partition[split_name],
            count=sizes[split_name],
            classes=classes,
            image_size=image_size,
            digits_per_image=digits_per_image,
            max_scale=float(max_scale),
            negative_share=float(negative_share),
            noise=float(noise),
            # Each split has its own stream, so resizing one split leaves the others unchanged.
            rng=np.random.default_rng([seed, 1 + position]),
        )
        for position, split_name in enumerate(SPLITS)
    }


def source_partition(seed: int) -> dict[str, np.ndarray]:
    """Sorted indices into scikit-learn's digits that each split may use.

    Disjoint, and stratified by digit value (60/20/20), so every split sees every value.
    """
    _, values = load_source_digits()
    rng = np.random.default_rng([seed, 0])
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for value in range(DIGIT_VALUES):
        members = rng.permutation(np.flatnonzero(values == value))
        n_train = round(SOURCE_SHARES["train"] * len(members))
        n_val = round(SOURCE_SHARES["val"] * len(members))
        parts["train"].append(members[:n_train])
        parts["val"].append(members[n_train : n_train + n_val])
        parts["test"].append(members[n_train + n_val :])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


@functools.cache
def load_source_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits: float32 images (N, 8, 8) in [0, 1] and values (N,)."""
    # Importing scikit-learn costs ~0.8 s; the CSV that load_digits parses costs 20 ms to read
    # directly. The public loader stays the fallback should scikit-learn move the file.
    spec = importlib.util.find_spec("sklearn")
    csv = None
    if spec is not None and spec.origin is not None:
        csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if csv is not None and csv.is_file():
        table = np.loadtxt(csv, delimiter=",")
        flat, values = table[:, :-1], table[:, -1]
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        flat, values = bunch.data, bunch.target
    images = (flat.reshape(-1, DIGIT_SIZE, DIGIT_SIZE) / 16.0).astype(np.float32)
    values = values.astype(np.int64)
    images.setflags(write=False)
    values.setflags(write=False)
    return images, values


def _generate_split(
    *,
    pool: np.ndarray,
    count: int,
    classes: tuple[int, ...],
    image_size: int,
    digits_per_image: int,
    max_scale: float,
    negative_share: float,
    noise: float,
    rng: np.random.Generator,
) -> Scenes:
    sources_all, values_all = load_source_digits()
    k = digits_per_image
    clutter = np.array([d for d in range(DIGIT_VALUES) if d not in classes])
    class_column = np.full(DIGIT_VALUES, -1)
    class_column[list(classes)] = np.arange(len(classes))

    # Random draws happen here, in bulk (only the rare grid fallback draws in the loop below).
    negative = np.zeros(count, dtype=bool)
    negative[rng.permutation(count)[: round(negative_share * count)]] = True
    digit_counts = rng.integers(1, k + 1, size=count)
    any_values = rng.integers(0, DIGIT_VALUES, size=(count, k))
    clutter_values = clutter[rng.integers(0, len(clutter), size=(count, k))]
    values = np.where(negative[:, None], clutter_values, any_values)
    class_slot = (rng.random(count) * digit_counts).astype(np.int64)
    forced = np.asarray(classes)[rng.integers(0, len(classes), size=count)]
    positive = np.flatnonzero(~negative)
    values[positive, class_slot[positive]] = forced[positive]

    # The source digit of each slot: uniform among this split's digits of that value.
    pool_values = values_all[pool]
    by_value = pool[np.argsort(pool_values, kind="stable")]
    lengths = np.bincount(pool_values, minlength=DIGIT_VALUES)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    picks = (rng.random((count, k)) * lengths[values]).astype(np.int64)
    sources = by_value[offsets[values] + picks]

    largest = min(image_size, int(DIGIT_SIZE * max_scale))
    sides = rng.integers(DIGIT_SIZE, largest + 1, size=(count, k))
    bilinear = rng.random((count, k)) < 0.5
    spans = (image_size - sides + 1)[:, :, None, None]
    corners = (rng.random((count, k, POSITION_TRIES, 2)) * spans).astype(np.int64)
    fallback = rng.random((count, k))
    canvas = rng.random((count, image_size, image_size), dtype=np.float32) * np.float32(noise)

    labels = np.zeros((count, len(classes)), dtype=np.uint8)
    placements: list[tuple[Placement, ...]] = []
    for i in range(count):
        n = int(digit_counts[i])
        boxes = _random_layout(
            sides[i, :n].tolist(), corners[i, :n].tolist(), fallback[i, :n].tolist(), image_size
        )
        if boxes is None:
            boxes = _grid_layout(n, image_size, rng)
        scene: list[Placement] = []
        for j, (top, left, side) in enumerate(boxes):
            source, value = int(sources[i, j]), int(values[i, j])
            matrix = _resize_matrix(side, bool(bilinear[i, j]))
            digit = matrix @ sources_all[source] @ matrix.T
            region = canvas[i, top : top + side, left : left + side]
            np.maximum(region, digit, out=region)
            if class_column[value] >= 0:
                labels[i, class_column[value]] = 1
            scene.append(Placement(source, value, top, left, side, bool(bilinear[i, j])))
        placements.append(tuple(scene))
    images = np.rint(canvas * 255.0).astype(np.uint8)
    return Scenes(images=images, labels=labels, placements=tuple(placements))


def _random_layout(
    sides: list[int], corners: list[list[list[int]]], picks: list[float], image_size: int
) -> list[Box] | None:
    """Each digit in turn at a uniformly random free position; None when one cannot fit.

    The candidate corners are a fast path: the first free one is uniform over the free
    positions. When all are taken, the free positions are enumerated and ``picks`` chooses one;
    a digit with no room at its size shrinks until it fits at 8x8.
    """
    boxes: list[Box] = []
    for side, candidates, pick in zip(sides, corners, picks, strict=True):
        for top, left in candidates:
            if all(
                top >= t + s or t >= top + side or left >= x + s or x >= left + side
                for t, x, s in boxes
            ):
                boxes.append((top, left, side))
                break
        else:
            for smaller in range(side, DIGIT_SIZE - 1, -1):
                span = image_size - smaller + 1
                free = np.ones((span, span), dtype=bool)
                for t, x, s in boxes:
                    free[max(0, t - smaller + 1) : t + s, max(0, x - smaller + 1) : x + s] = False
                positions = np.flatnonzero(free)
                if positions.size:
                    top, left = divmod(int(positions[int(pick * positions.size)]), span)
                    boxes.append((top, left, smaller))
                    break
            else:
                return None
    return boxes


def _grid_layout(n: int, image_size: int, rng: np.random.Generator) -> list[Box]:
    """8x8 digits in n distinct grid cells: always fits once image_size has been validated."""
    per_row = image_size // DIGIT_SIZE
    cell = image_size // per_row
    chosen = rng.choice(per_row * per_row, size=n, replace=False)
    jitter = rng.integers(0, cell - DIGIT_SIZE + 1, size=(n, 2))
    return [
        (int(c // per_row * cell + dy), int(c % per_row * cell + dx), DIGIT_SIZE)
        for c, (dy, dx) in zip(chosen, jitter, strict=True)
    ]


@functools.cache
def _resize_matrix(side: int, bilinear: bool) -> np.ndarray:
    """M (side, 8) such that M @ digit @ M.T resizes an 8x8 digit to side x side.

    Same sampling as torch's ``interpolate`` modes "bilinear" (align_corners=False) and
    "nearest-exact": output pixel i looks at source coordinate (i + 0.5) * 8 / side.
    """
    centres = (np.arange(side) + 0.5) * DIGIT_SIZE / side
    matrix = np.zeros((side, DIGIT_SIZE), dtype=np.float32)
    rows = np.arange(side)
    if bilinear:
        centres = np.clip(centres - 0.5, 0, DIGIT_SIZE - 1)
        low = np.floor(centres).astype(np.int64)
        high = np.minimum(low + 1, DIGIT_SIZE - 1)
        frac = (centres - low).astype(np.float32)
        np.add.at(matrix, (rows, low), 1 - frac)
        np.add.at(matrix, (rows, high), frac)
    else:
        matrix[rows, np.minimum(np.floor(centres), DIGIT_SIZE - 1).astype(np.int64)] = 1
    matrix.setflags(write=False)
    return matrix


def _validated_class_digits(class_digits: object) -> tuple[int, ...]:
    if isinstance(class_digits, (str, bytes)) or not isinstance(class_digits, (list, tuple)):
        raise SpecError(
            f"{NAME}: option 'class_digits' must be a list of digit values, got {class_digits!r}."
        )
    if not class_digits:
        raise SpecError(f"{NAME}: option 'class_digits' is empty; name at least one digit 0-9.")
    for d in class_digits:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= d <= 9:
            raise SpecError(f"{NAME}: option 'class_digits' holds {d!r}; use digits 0-9 only.")
    classes = tuple(int(d) for d in class_digits)
    if len(set(classes)) != len(classes):
        raise SpecError(f"{NAME}: option 'class_digits' repeats a digit: {list(classes)}.")
    if len(classes) == DIGIT_VALUES:
        raise SpecError(
            f"{NAME}: option 'class_digits' uses all ten digits, leaving no clutter for the "
            "negative images; leave at least one out."
        )
    return classes


def _check_int(option: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SpecError(f"{NAME}: option {option!r} must be an integer, got {value!r}.")
    if value < minimum:
        raise SpecError(f"{NAME}: option {option!r} must be at least {minimum}, got {value}.")


def _check_number(option: str, value: object, *, low: float, high: float, high_open: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SpecError(f"{NAME}: option {option!r} must be a number, got {value!r}.")
    if not (low <= value < high if high_open else low <= value <= high):
        interval = f"[{low:g}, {high:g})" if high_open else f"[{low:g}, {high:g}]"
        raise SpecError(f"{NAME}: option {option!r} must lie in {interval}, got {value}.")
