"""Multi-label classification metrics on plain numpy arrays (DESIGN.md section 6).

Every function takes ``probs``, an (N, C) array of probabilities in [0, 1], and ``labels``, an
(N, C) array of 0/1 (or booleans). A class is predicted for an image when its probability is
at least the class's threshold. Ratios whose denominator is zero are 0.0, never NaN.

This is the functional core: the training module, the results writer and the CLI call these
functions; nothing here imports torch. Ranking a split's scores is the one costly step behind
average precision, ROC-AUC and the exact threshold search; :class:`RankedSplit` does it once
and answers all three from it, and the module-level functions are one-shot shortcuts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import cached_property
from types import MappingProxyType
from typing import Any, overload

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

#: Threshold given to a class that has no positive in the validation split: nothing can be
#: tuned there, so it falls back to the fixed threshold of DESIGN.md section 6.
THRESHOLD_WITHOUT_POSITIVES = 0.5

#: The coarse search of :func:`grid_thresholds`: 0.05, 0.10, ..., 0.95 (k/20 as the nearest
#: float, so 0.1 here equals the literal 0.1).
THRESHOLD_GRID: tuple[float, ...] = tuple(k / 20 for k in range(1, 20))

#: Sewer-ML's class-importance weights for CIW-F2 (DESIGN.md section 6), by class code.
SEWERML_CLASS_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "RB": 1.00,
        "OB": 0.5518,
        "PF": 0.2896,
        "DE": 0.1622,
        "FS": 0.6419,
        "IS": 0.1847,
        "RO": 0.3559,
        "IN": 0.3131,
        "AF": 0.0811,
        "BE": 0.2275,
        "FO": 0.2477,
        "GR": 0.0901,
        "PH": 0.4167,
        "PB": 0.4167,
        "OS": 0.9009,
        "OP": 0.3829,
        "OK": 0.4396,
    }
)

# Two F-beta values this close (relative) are one number reached along different rounding
# paths, so the tie rule, not rounding noise, picks the threshold.
_FBETA_TIE_RELATIVE_TOLERANCE = 1e-13

# Scores below 2**-32 share the lowest logarithmic bucket (see _score_buckets).
_LOG_BUCKET_OCTAVES = 32

# Ranking works on blocks of about this many scores, whole cache lines of float64 columns.
_CLASS_BLOCK_ELEMENTS = 1 << 20
_CLASSES_PER_CACHE_LINE = 8

# Blocks are ranked on up to this many threads: numpy releases the GIL in the sorts,
# histograms and gathers that make up the work.
_MAX_RANKING_THREADS = min(
    len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8
)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@overload
def fbeta(precision: float, recall: float, beta: float) -> float: ...
@overload
def fbeta(precision: npt.ArrayLike, recall: npt.ArrayLike, beta: float) -> FloatArray: ...
def fbeta(precision: npt.ArrayLike, recall: npt.ArrayLike, beta: float) -> float | FloatArray:
    """F-beta = (1 + beta²)·P·R / (beta²·P + R), elementwise; 0.0 where P = R = 0.

    Returns a float for scalar inputs and an array otherwise; never NaN for finite inputs.
    """
    beta_squared = _checked_beta(beta) ** 2
    p = np.asarray(precision, dtype=np.float64)
    r = np.asarray(recall, dtype=np.float64)
    result = _divide_or_zero((1.0 + beta_squared) * p * r, beta_squared * p + r)
    if result.ndim == 0:
        return float(result)
    return result


def average_precision_per_class(probs: npt.ArrayLike, labels: npt.ArrayLike) -> FloatArray:
    """Average precision of every class, shape (C,); NaN for a class without a positive.

    Non-interpolated and tie-aware: for every class with a positive it equals
    ``sklearn.metrics.average_precision_score(labels[:, c], probs[:, c])`` up to float
    rounding (~1e-15).
    """
    checked_probs, checked_labels = _checked_probs_and_labels(probs, labels)
    ranks = _rank_positives(checked_probs, checked_labels)
    return _average_precision(ranks, ranks.all_images(checked_probs.shape[0]))


def roc_auc_per_class(probs: npt.ArrayLike, labels: npt.ArrayLike) -> FloatArray:
    """Area under the ROC curve of every class, shape (C,).

    NaN for a class without a positive or without a negative, where it is undefined.
    Tie-aware (a tied positive–negative pair counts one half): for every other class it equals
    ``sklearn.metrics.roc_auc_score(labels[:, c], probs[:, c])`` up to float rounding.
    """
    checked_probs, checked_labels = _checked_probs_and_labels(probs, labels)
    ranks = _rank_positives(checked_probs, checked_labels)
    return _roc_auc(ranks, ranks.all_images(checked_probs.shape[0]))


def tuned_thresholds(
    val_probs: npt.ArrayLike, val_labels: npt.ArrayLike, beta: float
) -> FloatArray:
    """Per class, the threshold that maximises that class's F-beta on the validation split.

    The search is exact over every distinct validation score of the class (threshold = the
    score, predicted when ``p >= threshold``). When several thresholds reach the maximum, the
    largest wins. A class with no positive in the split gets
    :data:`THRESHOLD_WITHOUT_POSITIVES` (0.5). Returns shape (C,).
    """
    beta_squared = _checked_beta(beta) ** 2
    checked_probs, checked_labels = _checked_probs_and_labels(val_probs, val_labels)
    return _tuned_thresholds(_rank_positives(checked_probs, checked_labels), beta_squared)


def grid_thresholds(val_probs: npt.ArrayLike, val_labels: npt.ArrayLike, beta: float) -> FloatArray:
    """Like :func:`tuned_thresholds`, but searching only :data:`THRESHOLD_GRID` (0.05…0.95).

    Ties go to the largest threshold; a class without a positive in the split gets
    :data:`THRESHOLD_WITHOUT_POSITIVES` (0.5). Returns shape (C,).
    """
    beta_squared = _checked_beta(beta) ** 2
    checked_probs, checked_labels = _checked_probs_and_labels(val_probs, val_labels)
    return _grid_thresholds(checked_probs, checked_labels, beta_squared)


def evaluate(
    probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    thresholds: float | npt.ArrayLike,
    class_names: Sequence[str],
    *,
    class_weights: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Every metric of DESIGN.md section 6 for one split, as a JSON-ready dict.

    A shortcut for ``RankedSplit(probs, labels).evaluate(...)``; see
    :meth:`RankedSplit.evaluate` for the keys.
    """
    return RankedSplit(probs, labels).evaluate(thresholds, class_names, class_weights=class_weights)


class RankedSplit:
    """One split's probabilities and labels, ranked once for every metric and threshold search.

    Ranking is done on first need and kept, so scoring a split under several threshold
    policies, or tuning thresholds on it and scoring it too, pays for it once. Arrays are
    checked (and converted to float64 / bool) on construction; a ValueError says what is wrong.
    """

    def __init__(self, probs: npt.ArrayLike, labels: npt.ArrayLike) -> None:
        self.probs, self.labels = _checked_probs_and_labels(probs, labels)
        self.is_positive_image = np.asarray(self.labels.any(axis=1), dtype=np.bool_)
        self._threshold_free_metrics_by_view: dict[bool, tuple[FloatArray, FloatArray]] = {}

    @property
    def images(self) -> int:
        return int(self.probs.shape[0])

    @property
    def classes(self) -> int:
        return int(self.probs.shape[1])

    def average_precision(self, *, positive_images_only: bool = False) -> FloatArray:
        """AP per class (NaN without a positive), over all images or the positive ones."""
        return self._threshold_free_metrics(positive_images_only)[0].copy()

    def roc_auc(self, *, positive_images_only: bool = False) -> FloatArray:
        """ROC-AUC per class (NaN without a positive or a negative), as for AP."""
        return self._threshold_free_metrics(positive_images_only)[1].copy()

    def tuned_thresholds(self, beta: float) -> FloatArray:
        """:func:`tuned_thresholds` on this split, reusing its ranking."""
        return _tuned_thresholds(self._ranks, _checked_beta(beta) ** 2)

    def grid_thresholds(self, beta: float) -> FloatArray:
        """:func:`grid_thresholds` on this split."""
        return _grid_thresholds(self.probs, self.labels, _checked_beta(beta) ** 2)

    def evaluate(
        self,
        thresholds: float | npt.ArrayLike,
        class_names: Sequence[str],
        *,
        class_weights: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Every metric of DESIGN.md section 6 for this split, as a JSON-ready dict.

        ``thresholds`` is one float for all classes or one per class, shape (C,).
        ``class_weights`` (class name → weight, covering every class) adds ``ciw_f2``.

        Keys: ``images``, ``negatives`` (images without any label); ``map``; ``roc_auc``;
        ``macro_precision``, ``macro_recall``, ``macro_f1``, ``macro_f2``; ``micro_precision``,
        ``micro_recall``, ``micro_f1``, ``micro_f2`` (from counts pooled over classes);
        ``ciw_f2`` (only with ``class_weights``: sum of w·F2 over sum of w); ``f1_neg`` and
        ``f1_pos`` (F1 of the image-level decisions "no class fires" and "some class fires"
        against "has no label" and "has a label"); ``neg_false_alarm_rate`` (share of negative
        images on which a class fires); ``classes_without_positives``;
        ``classes_without_negatives``; ``positive_images`` (the same class metrics computed on
        the images that carry a label, see below); ``per_class`` (name → ``ap``, ``roc_auc``,
        ``precision``, ``recall``, ``f1``, ``f2``, ``support``, ``threshold``).

        ``map``, the macro averages and ``ciw_f2`` run over the classes with at least one
        positive in this split; ``roc_auc`` over those with a positive and a negative. The
        classes left out are named in ``classes_without_positives`` and
        ``classes_without_negatives``. ``positive_images`` holds ``images``, ``map``,
        ``roc_auc``, the macro and micro metrics, ``ciw_f2`` (with weights),
        ``classes_without_negatives`` and ``per_class`` (``ap``, ``roc_auc``, ``precision``,
        ``recall``, ``f1``, ``f2``) on that subset; image-level metrics are left out there,
        as it holds no negative image. Values are plain floats, ints, strings, lists and
        ``None``: a ratio with a zero denominator is 0.0, and a mean over no class (or a
        class's AP or ROC-AUC where undefined) is ``None``.
        """
        per_class_thresholds = _checked_thresholds(thresholds, self.classes)
        names = _checked_class_names(class_names, self.classes)
        weights = None if class_weights is None else _checked_class_weights(class_weights, names)

        predicted = self.probs >= per_class_thresholds
        predicted_per_class = np.count_nonzero(predicted, axis=0)
        true_positives = _true_positives_at(self._ranks, per_class_thresholds)
        positives = self._ranks.positives_per_class
        counts = _ConfusionCounts.from_totals(true_positives, predicted_per_class, positives)
        on_positive_images = _ConfusionCounts.from_totals(
            true_positives,
            self._predicted_on_positive_images(predicted, predicted_per_class),
            positives,
        )
        has_positive = positives > 0
        average_precision, roc_auc = self._threshold_free_metrics(False)

        result: dict[str, Any] = {
            "images": self.images,
            "negatives": self.images - int(np.count_nonzero(self.is_positive_image)),
            "map": _mean_or_none(average_precision[has_positive]),
            "roc_auc": _nanmean_or_none(roc_auc),
            **_class_metrics(counts, has_positive, weights),
            **_image_level_metrics(predicted, self.is_positive_image),
            "classes_without_positives": _names_where(names, ~has_positive),
            "classes_without_negatives": _names_where(names, positives == self.images),
        }
        positive_ap, positive_roc_auc = self._threshold_free_metrics(True)
        positive_image_count = int(np.count_nonzero(self.is_positive_image))
        result["positive_images"] = {
            "images": positive_image_count,
            "map": _mean_or_none(positive_ap[has_positive]),
            "roc_auc": _nanmean_or_none(positive_roc_auc),
            **_class_metrics(on_positive_images, has_positive, weights),
            "classes_without_negatives": _names_where(names, positives == positive_image_count),
            "per_class": _per_class_metrics(
                names, on_positive_images, positive_ap, positive_roc_auc
            ),
        }
        result["per_class"] = _per_class_metrics(
            names, counts, average_precision, roc_auc, per_class_thresholds
        )
        return result

    @cached_property
    def _counted_rows(self) -> tuple[BoolArray, bool]:
        """The smaller of the negative and positive image sets, and whether it is the former.

        Counting over the smaller set, and subtracting where needed, keeps the extra work of
        the positive-image view at most half of the ranking itself.
        """
        negatives_are_fewer = 2 * int(np.count_nonzero(self.is_positive_image)) >= self.images
        if negatives_are_fewer:
            return ~self.is_positive_image, True
        return self.is_positive_image, False

    @cached_property
    def _ranks(self) -> _PositiveRanks:
        return _rank_positives(self.probs, self.labels, counted_rows=self._counted_rows[0])

    def _images_above(self, positive_images_only: bool) -> _ImagesAbove:
        if not positive_images_only:
            return self._ranks.all_images(self.images)
        counted = _ImagesAbove(
            images=int(np.count_nonzero(self._counted_rows[0])),
            at_or_above=self._ranks.counted_at_or_above,
            above=self._ranks.counted_above,
        )
        if self._counted_rows[1]:
            return self._ranks.all_images(self.images).without(counted)
        return counted

    def _predicted_on_positive_images(
        self, predicted: BoolArray, predicted_per_class: IntArray
    ) -> IntArray:
        counted_rows, counted_are_negative = self._counted_rows
        on_counted = np.count_nonzero(predicted[counted_rows], axis=0)
        return predicted_per_class - on_counted if counted_are_negative else on_counted

    def _threshold_free_metrics(self, positive_images_only: bool) -> tuple[FloatArray, FloatArray]:
        """AP and ROC-AUC per class, computed once per view."""
        cache = self._threshold_free_metrics_by_view
        if positive_images_only not in cache:
            images = self._images_above(positive_images_only)
            cache[positive_images_only] = (
                _average_precision(self._ranks, images),
                _roc_auc(self._ranks, images),
            )
        return cache[positive_images_only]


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _checked_probs_and_labels(
    probs: npt.ArrayLike, labels: npt.ArrayLike
) -> tuple[FloatArray, BoolArray]:
    """``probs`` as contiguous float64 and ``labels`` as bool, or a ValueError saying why."""
    checked_probs = np.ascontiguousarray(probs, dtype=np.float64)
    raw_labels = np.asarray(labels)
    if checked_probs.ndim != 2:
        raise ValueError(
            f"probs must be a 2-D array (images, classes); got shape {checked_probs.shape}."
        )
    if raw_labels.shape != checked_probs.shape:
        raise ValueError(
            f"labels must have the shape of probs {checked_probs.shape}; got {raw_labels.shape}."
        )
    # min/max propagate NaN, so this one check also rejects NaN.
    if checked_probs.size and not (checked_probs.min() >= 0.0 and checked_probs.max() <= 1.0):
        raise ValueError("probs must be probabilities in [0, 1] (no NaN); apply a sigmoid first.")
    return checked_probs, _checked_labels(raw_labels)


def _checked_labels(labels: np.ndarray) -> BoolArray:
    if labels.dtype == np.bool_:
        return np.ascontiguousarray(labels)
    if not np.issubdtype(labels.dtype, np.number) or not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must contain only 0 and 1 (or booleans).")
    return np.ascontiguousarray(labels != 0)


def _checked_beta(beta: float) -> float:
    value = float(beta)
    if not value >= 0.0 or value == float("inf"):
        raise ValueError(f"beta must be a finite number >= 0; got {beta!r}.")
    return value


def _checked_thresholds(thresholds: float | npt.ArrayLike, n_classes: int) -> FloatArray:
    values = np.asarray(thresholds, dtype=np.float64)
    if values.ndim == 0:
        values = np.full(n_classes, float(values))
    if values.shape != (n_classes,):
        raise ValueError(
            f"thresholds must be one number or one per class ({n_classes}); "
            f"got shape {values.shape}."
        )
    if not np.isfinite(values).all():
        raise ValueError("thresholds must be finite numbers.")
    return values


def _checked_class_names(class_names: Sequence[str], n_classes: int) -> list[str]:
    names = [str(name) for name in class_names]
    if len(names) != n_classes:
        raise ValueError(f"class_names has {len(names)} names for {n_classes} classes.")
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"class_names must be unique; repeated: {', '.join(duplicates)}.")
    return names


def _checked_class_weights(class_weights: Mapping[str, float], names: list[str]) -> FloatArray:
    missing = [name for name in names if name not in class_weights]
    unknown = sorted(set(class_weights) - set(names))
    if missing or unknown:
        raise ValueError(
            "class_weights must name exactly the classes; "
            f"missing: {missing or 'none'}, unknown: {unknown or 'none'}."
        )
    weights = np.array([float(class_weights[name]) for name in names])
    if not (np.isfinite(weights).all() and (weights >= 0).all()):
        raise ValueError("class_weights must be finite numbers >= 0.")
    return weights


# --------------------------------------------------------------------------------------------
# Ranking: the counts behind average precision, ROC-AUC and the exact threshold search
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ImagesAbove:
    """For each ranked positive: images of its class scoring >= and > its score.

    Counted over a set of ``images`` images (all of a split, or a subset of them).
    """

    images: int
    at_or_above: IntArray
    above: IntArray

    def without(self, subset: _ImagesAbove) -> _ImagesAbove:
        """The counts over these images minus a subset of them."""
        return _ImagesAbove(
            self.images - subset.images,
            self.at_or_above - subset.at_or_above,
            self.above - subset.above,
        )


@dataclass(frozen=True)
class _PositiveRanks:
    """For each positive (image, class) pair: what a threshold at its score would give.

    Entries are grouped by class (ascending) and, within a class, by score (ascending).
    """

    class_index: IntArray
    score: FloatArray
    #: Positives of the class scoring >= this score: the true positives at this threshold.
    positives_at_or_above: IntArray
    #: Positives of the class scoring > this score.
    positives_above: IntArray
    #: Images of the class scoring >= this score: true plus false positives at it.
    predicted_at_or_above: IntArray
    #: Images of the class scoring > this score.
    predicted_above: IntArray
    #: Shape (C,): positives per class.
    positives_per_class: IntArray
    #: As ``predicted_*``, over the ``counted_rows`` given to :func:`_rank_positives` only;
    #: empty when none were given.
    counted_at_or_above: IntArray
    counted_above: IntArray

    def all_images(self, images: int) -> _ImagesAbove:
        return _ImagesAbove(images, self.predicted_at_or_above, self.predicted_above)

    @classmethod
    def concatenate(cls, parts: list[_PositiveRanks]) -> _PositiveRanks:
        """Join the ranks of consecutive class blocks."""
        if not parts:
            nothing = np.zeros(0, dtype=np.intp)
            return cls(nothing, np.zeros(0), *[nothing] * (len(fields(cls)) - 2))
        return cls(
            **{
                field.name: np.concatenate([getattr(part, field.name) for part in parts])
                for field in fields(cls)
            }
        )


def _rank_positives(
    probs: FloatArray, labels: BoolArray, counted_rows: BoolArray | None = None
) -> _PositiveRanks:
    """Count, for every positive, the positives and all images scoring at least as high.

    With ``counted_rows`` (one bool per image), also the images among those rows. Classes go
    in blocks of a few columns: the temporaries of a block stay small enough to be reused
    from one block to the next and to keep the bucket histogram in cache, which makes the
    whole faster than one pass over all classes. Blocks run on a few threads.
    """
    n_images, n_classes = probs.shape
    block = _CLASS_BLOCK_ELEMENTS // max(n_images, 1)
    block = max(_CLASSES_PER_CACHE_LINE, block - block % _CLASSES_PER_CACHE_LINE)
    starts = range(0, n_classes, block)

    def rank_block(start: int) -> _PositiveRanks:
        return _rank_positives_of_block(
            np.ascontiguousarray(probs[:, start : start + block]),
            np.ascontiguousarray(labels[:, start : start + block]),
            first_class=start,
            counted_rows=counted_rows,
        )

    parts = _map_blocks(rank_block, starts)
    return _PositiveRanks.concatenate(parts)


def _map_blocks(
    function: Callable[[int], _PositiveRanks], starts: Sequence[int]
) -> list[_PositiveRanks]:
    threads = min(_MAX_RANKING_THREADS, len(starts))
    if threads <= 1:
        return [function(start) for start in starts]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mlcbench-rank") as pool:
        return list(pool.map(function, starts))


def _rank_positives_of_block(
    probs: FloatArray, labels: BoolArray, first_class: int, counted_rows: BoolArray | None
) -> _PositiveRanks:
    """:func:`_rank_positives` for a block of classes starting at ``first_class``.

    Sorting every score costs about as much as scikit-learn's own per-class loop, so scores
    first go into buckets whose order is score order (see :func:`_score_buckets`). A bucket
    histogram counts everything in higher buckets; only the few scores sharing a bucket with
    a positive are sorted, to settle exact order and ties inside those buckets.
    """
    n_images, n_classes = probs.shape
    bucket, buckets_per_class = _score_buckets(probs)
    at_or_below_bucket = _cumulative_bucket_counts(bucket, n_classes, buckets_per_class)

    holds_positive = np.zeros(n_classes * buckets_per_class, dtype=np.bool_)
    holds_positive[bucket[labels]] = True
    shared = np.flatnonzero(holds_positive[bucket])
    shared = shared[
        _order_by_class_then_score(probs.ravel()[shared], shared % n_classes, n_classes)
    ]
    shared_score = probs.ravel()[shared]
    shared_bucket = bucket.ravel()[shared]
    is_positive = labels.ravel()[shared]

    # Entries of equal score (and class) form a run; a threshold at a positive's score
    # predicts its whole run.
    run_start, run_end = _run_bounds(
        np.r_[
            True,
            (shared_bucket[1:] != shared_bucket[:-1]) | (shared_score[1:] != shared_score[:-1]),
        ]
    )
    run_start, run_end = run_start[is_positive], run_end[is_positive]
    positive_bucket = shared_bucket[is_positive]
    bucket_end = np.searchsorted(shared_bucket, positive_bucket, side="right")
    in_higher_buckets = n_images - at_or_below_bucket[positive_bucket]

    class_index = positive_bucket // buckets_per_class
    class_end = np.searchsorted(class_index, class_index, side="right")
    positive_run_start, positive_run_end = _run_bounds(np.r_[True, run_start[1:] != run_start[:-1]])

    counted_at_or_above = counted_above = np.zeros(0, dtype=np.intp)
    if counted_rows is not None:
        counted_at_or_below_bucket = _cumulative_bucket_counts(
            bucket[counted_rows], n_classes, buckets_per_class
        )
        counted_before = np.zeros(len(shared) + 1, dtype=np.intp)
        np.cumsum(counted_rows[shared // n_classes], out=counted_before[1:])
        counted_in_higher_buckets = (
            int(np.count_nonzero(counted_rows)) - counted_at_or_below_bucket[positive_bucket]
        )
        counted_at_or_above = (
            counted_in_higher_buckets + counted_before[bucket_end] - counted_before[run_start]
        )
        counted_above = (
            counted_in_higher_buckets + counted_before[bucket_end] - counted_before[run_end]
        )

    return _PositiveRanks(
        class_index=class_index + first_class,
        score=shared_score[is_positive],
        positives_at_or_above=class_end - positive_run_start,
        positives_above=class_end - positive_run_end,
        predicted_at_or_above=in_higher_buckets + (bucket_end - run_start),
        predicted_above=in_higher_buckets + (bucket_end - run_end),
        positives_per_class=np.bincount(class_index, minlength=n_classes),
        counted_at_or_above=counted_at_or_above,
        counted_above=counted_above,
    )


def _score_buckets(probs: FloatArray) -> tuple[IntArray, int]:
    """An integer bucket per score, never decreasing as the score grows, unique per class.

    The bucket is a linear part, floor(p·N), plus a logarithmic part read from the float's
    exponent and leading mantissa bits. Both are monotone in p (IEEE operations round
    monotonically and non-negative floats order like their bit patterns), so the sum is too,
    and two scores in different buckets are ordered by their buckets. The linear part spreads
    scores over [0, 1]; the logarithmic part separates the many tiny scores a confident model
    gives negatives, which would otherwise pile into bucket 0. Returns the (N, C) bucket ids,
    offset so that class c owns [c·B, (c+1)·B), and B.
    """
    n_images, n_classes = probs.shape
    linear_buckets = max(n_images, 1)
    mantissa_bits = max(int(np.log2(max(n_images, 1) / _LOG_BUCKET_OCTAVES)), 0)
    shift = 52 - mantissa_bits
    log_floor = int(np.float64(2.0**-_LOG_BUCKET_OCTAVES).view(np.int64)) >> shift
    log_buckets = (int(np.float64(1.0).view(np.int64)) >> shift) - log_floor
    buckets_per_class = linear_buckets + log_buckets + 1

    bucket = np.empty(probs.shape, dtype=np.intp)
    np.multiply(probs, linear_buckets, out=bucket, casting="unsafe")
    log_part = probs.view(np.int64) >> shift
    # -0.0 has the sign bit set; the floor also maps it to the bucket of +0.0.
    np.maximum(log_part, log_floor, out=log_part)
    bucket += log_part
    bucket += np.arange(n_classes, dtype=np.intp) * buckets_per_class - log_floor
    return bucket, buckets_per_class


def _cumulative_bucket_counts(bucket: IntArray, n_classes: int, buckets_per_class: int) -> IntArray:
    """Flat (C·B,): images of the bucket's class in that bucket or a lower one."""
    counts = np.bincount(bucket.ravel(), minlength=n_classes * buckets_per_class)
    per_class = counts.reshape(n_classes, buckets_per_class)
    np.cumsum(per_class, axis=1, out=per_class)
    return counts


def _order_by_class_then_score(
    score: FloatArray, class_index: IntArray, n_classes: int
) -> IntArray:
    """Argsort by (class, score): a score sort, then a stable sort by class.

    Class ids of 16 bits or fewer get numpy's linear-time radix sort, so this costs about
    one float sort, far less than ``np.lexsort``.
    """
    by_score = np.argsort(score)
    small_class_index = class_index[by_score].astype(np.min_scalar_type(max(n_classes - 1, 0)))
    return by_score[np.argsort(small_class_index, kind="stable")]


def _run_bounds(starts_run: BoolArray) -> tuple[IntArray, IntArray]:
    """For entries in runs (``starts_run`` marks each run's first): where each one's run
    starts, and where it ends (one past its last entry)."""
    first = np.flatnonzero(starts_run)
    run = np.cumsum(starts_run) - 1
    return first[run], np.append(first[1:], len(starts_run))[run]


def _average_precision(ranks: _PositiveRanks, images: _ImagesAbove) -> FloatArray:
    """AP = mean over a class's positives of the precision at the threshold of its score.

    Positives tied at one score all get the precision after the whole tie, which is what
    scikit-learn's step integral over distinct thresholds gives.
    """
    precision = ranks.positives_at_or_above / images.at_or_above
    n_classes = len(ranks.positives_per_class)
    total = np.bincount(ranks.class_index, weights=precision, minlength=n_classes)
    average_precision = np.full(n_classes, np.nan)
    has_positive = ranks.positives_per_class > 0
    average_precision[has_positive] = total[has_positive] / ranks.positives_per_class[has_positive]
    return average_precision


def _roc_auc(ranks: _PositiveRanks, images: _ImagesAbove) -> FloatArray:
    """ROC-AUC = share of (positive, negative) pairs ranked right, a tie counting one half.

    A positive outranks the negatives below its score, ``negatives - (at_or_above + above)/2``
    with the tied ones halved; summed per class and divided by the number of pairs.
    """
    n_classes = len(ranks.positives_per_class)
    negatives_at_or_above = images.at_or_above - ranks.positives_at_or_above
    negatives_above = images.above - ranks.positives_above
    not_outranked = np.bincount(
        ranks.class_index, weights=negatives_at_or_above + negatives_above, minlength=n_classes
    )
    negatives = images.images - ranks.positives_per_class
    pairs = ranks.positives_per_class * negatives.astype(np.float64)
    roc_auc = np.full(n_classes, np.nan)
    defined = pairs > 0
    roc_auc[defined] = 1.0 - not_outranked[defined] / (2.0 * pairs[defined])
    return roc_auc


def _tuned_thresholds(ranks: _PositiveRanks, beta_squared: float) -> FloatArray:
    # Only a positive's own score can win: a score held by negatives alone predicts the same
    # positives as the next higher distinct score plus more false positives, so its F-beta is
    # strictly lower (or 0, below the maximum, which is > 0) and it is never chosen.
    scores = _fbeta_at_thresholds(
        ranks.positives_at_or_above,
        ranks.predicted_at_or_above,
        ranks.positives_per_class[ranks.class_index],
        beta_squared,
    )
    return _largest_score_reaching_maximum(
        scores, ranks.score, ranks.class_index, len(ranks.positives_per_class)
    )


def _true_positives_at(ranks: _PositiveRanks, thresholds: FloatArray) -> IntArray:
    """Per class, the positives scoring at least the class's threshold (from the ranks)."""
    class_end = np.cumsum(ranks.positives_per_class)
    class_start = class_end - ranks.positives_per_class
    below = [
        np.searchsorted(ranks.score[start:end], threshold, side="left")
        for start, end, threshold in zip(class_start, class_end, thresholds, strict=True)
    ]
    return ranks.positives_per_class - np.asarray(below, dtype=np.intp).reshape(-1)


def _grid_thresholds(probs: FloatArray, labels: BoolArray, beta_squared: float) -> FloatArray:
    grid = np.asarray(THRESHOLD_GRID)
    n_classes = probs.shape[1]
    # levels[i, c]: grid values <= p, so p >= grid[k] exactly when the level exceeds k.
    levels = _grid_levels(probs, grid) + np.arange(n_classes) * (len(grid) + 1)
    shape = (n_classes, len(grid) + 1)
    size = n_classes * (len(grid) + 1)
    at_level = np.bincount(levels.ravel(), minlength=size).reshape(shape)
    positives_at_level = np.bincount(levels[labels], minlength=size).reshape(shape)
    # Column k of the reversed cumulative sum counts levels >= k; k + 1 gives p >= grid[k].
    predicted = np.cumsum(at_level[:, ::-1], axis=1)[:, ::-1][:, 1:].T
    true_positives = np.cumsum(positives_at_level[:, ::-1], axis=1)[:, ::-1][:, 1:].T
    positives = positives_at_level.sum(axis=1)
    scores = _fbeta_at_thresholds(true_positives, predicted, positives, beta_squared)
    best = scores.max(axis=0, initial=0.0)
    reaches = scores >= best * (1.0 - _FBETA_TIE_RELATIVE_TOLERANCE)
    # The grid ascends, so the last row reaching the maximum is the largest threshold.
    last_row = len(grid) - 1 - np.argmax(reaches[::-1], axis=0)
    return np.where(positives > 0, grid[last_row], THRESHOLD_WITHOUT_POSITIVES)


def _grid_levels(probs: FloatArray, grid: FloatArray) -> IntArray:
    """How many grid values are <= each score, exactly; (N, C) ints.

    ``np.searchsorted`` on every score is slow, so a first guess from floor(p·steps), which
    rounding can leave one off near a grid value, is corrected by exact comparisons.
    """
    steps = len(grid) + 1
    padded = np.concatenate([[-np.inf], grid, [np.inf]])
    guess = np.empty(probs.shape, dtype=np.intp)
    np.multiply(probs, steps, out=guess, casting="unsafe")
    np.clip(guess, 0, len(grid), out=guess)
    guess -= probs < padded[guess]
    guess += probs >= padded[guess + 1]
    return guess


def _fbeta_at_thresholds(
    true_positives: npt.ArrayLike,
    predicted: npt.ArrayLike,
    positives: npt.ArrayLike,
    beta_squared: float,
) -> FloatArray:
    """F-beta from counts: (1+b²)TP / (b²·positives + predicted); 0.0 when both are 0."""
    numerator = (1.0 + beta_squared) * np.asarray(true_positives, dtype=np.float64)
    denominator = beta_squared * np.asarray(positives, dtype=np.float64) + np.asarray(
        predicted, dtype=np.float64
    )
    return _divide_or_zero(numerator, denominator)


def _largest_score_reaching_maximum(
    fbeta_values: FloatArray, score: FloatArray, class_index: IntArray, n_classes: int
) -> FloatArray:
    """Per class, the largest score whose F-beta reaches the class maximum; 0.5 if none."""
    thresholds = np.full(n_classes, THRESHOLD_WITHOUT_POSITIVES)
    if len(score) == 0:
        return thresholds
    class_start = np.flatnonzero(np.r_[True, class_index[1:] != class_index[:-1]])
    best = np.maximum.reduceat(fbeta_values, class_start)
    best_of_own_class = np.repeat(best, np.diff(np.r_[class_start, len(score)]))
    reaches = fbeta_values >= best_of_own_class * (1.0 - _FBETA_TIE_RELATIVE_TOLERANCE)
    # Scores ascend within a class, so the last entry reaching the maximum is the largest.
    last = np.maximum.reduceat(np.where(reaches, np.arange(len(score)), -1), class_start)
    thresholds[class_index[class_start]] = score[last]
    return thresholds


# --------------------------------------------------------------------------------------------
# Thresholded metrics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ConfusionCounts:
    """True/false positives and false negatives, per class (C,) or pooled (scalars)."""

    true_positives: IntArray
    false_positives: IntArray
    false_negatives: IntArray

    @classmethod
    def from_totals(
        cls, true_positives: IntArray, predicted: IntArray, positives: IntArray
    ) -> _ConfusionCounts:
        return cls(
            true_positives=true_positives,
            false_positives=predicted - true_positives,
            false_negatives=positives - true_positives,
        )

    def pooled(self) -> _ConfusionCounts:
        return _ConfusionCounts(
            true_positives=np.asarray(self.true_positives.sum()),
            false_positives=np.asarray(self.false_positives.sum()),
            false_negatives=np.asarray(self.false_negatives.sum()),
        )

    @property
    def support(self) -> IntArray:
        return self.true_positives + self.false_negatives

    def precision(self) -> FloatArray:
        return _divide_or_zero(self.true_positives, self.true_positives + self.false_positives)

    def recall(self) -> FloatArray:
        return _divide_or_zero(self.true_positives, self.support)

    def fbeta(self, beta: float) -> FloatArray:
        # From counts rather than from P and R, as scikit-learn does, so values match exactly.
        return _fbeta_at_thresholds(
            self.true_positives,
            self.true_positives + self.false_positives,
            self.support,
            beta**2,
        )


def _class_metrics(
    counts: _ConfusionCounts, has_positive: BoolArray, weights: FloatArray | None
) -> dict[str, float | None]:
    """Macro (over classes with a positive) and micro P, R, F1, F2; CIW-F2 with weights."""
    pooled = counts.pooled()
    f2 = counts.fbeta(2.0)
    result: dict[str, float | None] = {
        "macro_precision": _mean_or_none(counts.precision()[has_positive]),
        "macro_recall": _mean_or_none(counts.recall()[has_positive]),
        "macro_f1": _mean_or_none(counts.fbeta(1.0)[has_positive]),
        "macro_f2": _mean_or_none(f2[has_positive]),
        "micro_precision": float(pooled.precision()),
        "micro_recall": float(pooled.recall()),
        "micro_f1": float(pooled.fbeta(1.0)),
        "micro_f2": float(pooled.fbeta(2.0)),
    }
    if weights is not None:
        result["ciw_f2"] = _weighted_mean_or_none(f2[has_positive], weights[has_positive])
    return result


def _image_level_metrics(predicted: BoolArray, is_positive_image: BoolArray) -> dict[str, float]:
    """F1 of the image-level decisions "no label" (neg) and "some label" (pos).

    An image is predicted negative when no class reaches its threshold.
    """
    is_negative = ~is_positive_image
    predicted_negative = ~np.asarray(predicted.any(axis=1), dtype=np.bool_)
    negatives = int(np.count_nonzero(is_negative))
    false_alarms = int(np.count_nonzero(is_negative & ~predicted_negative))
    return {
        "f1_neg": _binary_f1(predicted_negative, is_negative),
        "f1_pos": _binary_f1(~predicted_negative, ~is_negative),
        "neg_false_alarm_rate": false_alarms / negatives if negatives else 0.0,
    }


def _binary_f1(predicted: BoolArray, actual: BoolArray) -> float:
    true_positives = int(np.count_nonzero(predicted & actual))
    wrong = int(np.count_nonzero(predicted != actual))
    denominator = 2 * true_positives + wrong
    return 2 * true_positives / denominator if denominator else 0.0


def _per_class_metrics(
    names: list[str],
    counts: _ConfusionCounts,
    average_precision: FloatArray,
    roc_auc: FloatArray,
    thresholds: FloatArray | None = None,
) -> dict[str, dict[str, Any]]:
    columns = {
        "precision": counts.precision(),
        "recall": counts.recall(),
        "f1": counts.fbeta(1.0),
        "f2": counts.fbeta(2.0),
    }
    per_class: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(names):
        row: dict[str, Any] = {
            "ap": _float_or_none(average_precision[index]),
            "roc_auc": _float_or_none(roc_auc[index]),
            **{key: float(values[index]) for key, values in columns.items()},
        }
        if thresholds is not None:
            row["support"] = int(counts.support[index])
            row["threshold"] = float(thresholds[index])
        per_class[name] = row
    return per_class


def _names_where(names: list[str], mask: BoolArray) -> list[str]:
    return [name for name, chosen in zip(names, mask, strict=True) if chosen]


# --------------------------------------------------------------------------------------------
# NaN-free arithmetic
# --------------------------------------------------------------------------------------------


def _divide_or_zero(numerator: npt.ArrayLike, denominator: npt.ArrayLike) -> FloatArray:
    """numerator / denominator elementwise, with 0.0 wherever the denominator is 0."""
    top = np.asarray(numerator, dtype=np.float64)
    bottom = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(top.shape, bottom.shape))
    np.divide(top, bottom, out=out, where=bottom != 0)
    return out


def _float_or_none(value: np.floating[Any]) -> float | None:
    return None if np.isnan(value) else float(value)


def _mean_or_none(values: FloatArray) -> float | None:
    return float(values.mean()) if len(values) else None


def _nanmean_or_none(values: FloatArray) -> float | None:
    return _mean_or_none(values[~np.isnan(values)])


def _weighted_mean_or_none(values: FloatArray, weights: FloatArray) -> float | None:
    total_weight = float(weights.sum())
    return float((values * weights).sum() / total_weight) if total_weight > 0 else None
