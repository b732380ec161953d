"""Multi-label classification metrics on plain numpy arrays (DESIGN.md section 6).

Every function takes ``probs``, an (N, C) array of probabilities in [0, 1], and ``labels``, an
(N, C) array of 0/1 (or booleans). A class is predicted for an image when its probability is
at least the class's threshold. Ratios whose denominator is zero are 0.0, never NaN.

This is the functional core: the training module, the results writer and the CLI call these
functions; nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
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

# Two F-beta values this close (relative) are one number reached along different rounding
# paths, so the tie rule, not rounding noise, picks the threshold.
_FBETA_TIE_RELATIVE_TOLERANCE = 1e-13

# Scores below 2**-32 share the lowest logarithmic bucket (see _score_buckets).
_LOG_BUCKET_OCTAVES = 32

# Ranking works on blocks of about this many scores, whole cache lines of float64 columns.
_CLASS_BLOCK_ELEMENTS = 1 << 20
_CLASSES_PER_CACHE_LINE = 8


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
    return _average_precision(_rank_positives(checked_probs, checked_labels))


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
    ranks = _rank_positives(checked_probs, checked_labels)
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


def grid_thresholds(val_probs: npt.ArrayLike, val_labels: npt.ArrayLike, beta: float) -> FloatArray:
    """Like :func:`tuned_thresholds`, but searching only :data:`THRESHOLD_GRID` (0.05…0.95).

    Ties go to the largest threshold; a class without a positive in the split gets
    :data:`THRESHOLD_WITHOUT_POSITIVES` (0.5). Returns shape (C,).
    """
    beta_squared = _checked_beta(beta) ** 2
    checked_probs, checked_labels = _checked_probs_and_labels(val_probs, val_labels)
    positives = np.count_nonzero(checked_labels, axis=0)
    scores = np.empty((len(THRESHOLD_GRID), checked_probs.shape[1]))
    for row, threshold in enumerate(THRESHOLD_GRID):
        predicted = checked_probs >= threshold
        scores[row] = _fbeta_at_thresholds(
            np.count_nonzero(predicted & checked_labels, axis=0),
            np.count_nonzero(predicted, axis=0),
            positives,
            beta_squared,
        )
    best = scores.max(axis=0, initial=0.0)
    reaches = scores >= best * (1.0 - _FBETA_TIE_RELATIVE_TOLERANCE)
    # The grid ascends, so the last row reaching the maximum is the largest threshold.
    last_row = len(THRESHOLD_GRID) - 1 - np.argmax(reaches[::-1], axis=0)
    chosen = np.asarray(THRESHOLD_GRID)[last_row]
    return np.where(positives > 0, chosen, THRESHOLD_WITHOUT_POSITIVES)


def evaluate(
    probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    thresholds: float | npt.ArrayLike,
    class_names: Sequence[str],
    *,
    class_weights: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Every metric of DESIGN.md section 6 for one split, as a JSON-ready dict.

    ``thresholds`` is one float for all classes or one per class, shape (C,).
    ``class_weights`` (class name → weight, covering every class) adds ``ciw_f2``.

    Keys: ``images``, ``negatives`` (images without any label); ``map``; ``macro_precision``,
    ``macro_recall``, ``macro_f1``, ``macro_f2``; ``micro_precision``, ``micro_recall``,
    ``micro_f1``, ``micro_f2`` (from counts pooled over classes); ``ciw_f2`` (only with
    ``class_weights``: sum of w·F2 over sum of w); ``f1_neg`` and ``f1_pos`` (F1 of the
    image-level decisions "no class fires" and "some class fires" against "has no label" and
    "has a label"); ``neg_false_alarm_rate`` (share of negative images on which a class
    fires); ``classes_without_positives``; ``per_class`` (name → ``ap``, ``precision``,
    ``recall``, ``f1``, ``f2``, ``support``, ``threshold``).

    ``map``, the macro averages and ``ciw_f2`` run over the classes with at least one positive
    in this split; the others are named in ``classes_without_positives``. Values are plain
    floats, ints, strings, lists and ``None``: a ratio with a zero denominator is 0.0, and a
    mean over no class (or a class's AP without a positive) is ``None``.
    """
    checked_probs, checked_labels = _checked_probs_and_labels(probs, labels)
    n_classes = checked_probs.shape[1]
    per_class_thresholds = _checked_thresholds(thresholds, n_classes)
    names = _checked_class_names(class_names, n_classes)
    predicted = checked_probs >= per_class_thresholds
    counts = _ConfusionCounts.per_class(predicted, checked_labels)
    average_precision = _average_precision(_rank_positives(checked_probs, checked_labels))
    has_positive = counts.support > 0

    result: dict[str, Any] = {
        "images": int(checked_probs.shape[0]),
        "negatives": int(np.count_nonzero(checked_labels.sum(axis=1) == 0)),
        "map": _mean_or_none(average_precision[has_positive]),
        **_macro_metrics(counts, has_positive),
        **_micro_metrics(counts),
    }
    if class_weights is not None:
        weights = _checked_class_weights(class_weights, names)
        result["ciw_f2"] = _weighted_mean_or_none(
            counts.fbeta(2.0)[has_positive], weights[has_positive]
        )
    result.update(_image_level_metrics(predicted, checked_labels))
    result["classes_without_positives"] = [
        name for name, positive in zip(names, has_positive, strict=True) if not positive
    ]
    result["per_class"] = _per_class_metrics(names, counts, average_precision, per_class_thresholds)
    return result


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
# Ranking: the counts behind average precision and the exact threshold search
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PositiveRanks:
    """For each positive (image, class) pair: what a threshold at its score would give.

    Entries are grouped by class (ascending) and, within a class, by score (ascending).
    """

    class_index: IntArray
    score: FloatArray
    #: Positives of the class scoring >= this score: the true positives at this threshold.
    positives_at_or_above: IntArray
    #: Images of the class scoring >= this score: true plus false positives at it.
    predicted_at_or_above: IntArray
    #: Shape (C,): positives per class.
    positives_per_class: IntArray

    @classmethod
    def concatenate(cls, parts: list[_PositiveRanks]) -> _PositiveRanks:
        """Join the ranks of consecutive class blocks."""
        if not parts:
            nothing = np.zeros(0, dtype=np.intp)
            return cls(nothing, np.zeros(0), nothing, nothing, nothing)
        return cls(
            **{
                field.name: np.concatenate([getattr(part, field.name) for part in parts])
                for field in fields(cls)
            }
        )


def _rank_positives(probs: FloatArray, labels: BoolArray) -> _PositiveRanks:
    """Count, for every positive, the positives and all images scoring at least as high.

    Classes go in blocks of a few columns: the temporaries of a block stay small enough to
    be reused from one block to the next and to keep the bucket histogram in cache, which
    makes the whole faster than one pass over all classes.
    """
    n_images, n_classes = probs.shape
    block = _CLASS_BLOCK_ELEMENTS // max(n_images, 1)
    block = max(_CLASSES_PER_CACHE_LINE, block - block % _CLASSES_PER_CACHE_LINE)
    parts = [
        _rank_positives_of_block(
            np.ascontiguousarray(probs[:, start : start + block]),
            np.ascontiguousarray(labels[:, start : start + block]),
            first_class=start,
        )
        for start in range(0, n_classes, block)
    ]
    return _PositiveRanks.concatenate(parts)


def _rank_positives_of_block(
    probs: FloatArray, labels: BoolArray, first_class: int
) -> _PositiveRanks:
    """:func:`_rank_positives` for a contiguous block of classes starting at ``first_class``.

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
    order = _order_by_class_then_score(probs.ravel()[shared], shared % n_classes, n_classes)
    shared = shared[order]
    shared_bucket = bucket.ravel()[shared]
    shared_score = probs.ravel()[shared]
    is_positive = labels.ravel()[shared]

    # Inside a bucket, the shared scores at or above a positive's run of equal scores.
    run_start = _run_starts(shared_bucket, shared_score)
    positive_bucket = shared_bucket[is_positive]
    bucket_end = np.searchsorted(shared_bucket, positive_bucket, side="right")
    predicted = (
        n_images - at_or_below_bucket[positive_bucket] + (bucket_end - run_start[is_positive])
    )

    class_index = positive_bucket // buckets_per_class
    positive_score = shared_score[is_positive]
    class_end = np.searchsorted(class_index, class_index, side="right")
    true_positives = class_end - _run_starts(positive_bucket, positive_score)
    return _PositiveRanks(
        class_index=class_index + first_class,
        score=positive_score,
        positives_at_or_above=true_positives,
        predicted_at_or_above=predicted,
        positives_per_class=np.bincount(class_index, minlength=n_classes),
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


def _run_starts(bucket: IntArray, score: FloatArray) -> IntArray:
    """For sorted entries, the index where each entry's run of equal (bucket, score) starts."""
    starts_run = np.ones(len(score), dtype=np.bool_)
    starts_run[1:] = (bucket[1:] != bucket[:-1]) | (score[1:] != score[:-1])
    return np.maximum.accumulate(np.where(starts_run, np.arange(len(score)), 0))


def _average_precision(ranks: _PositiveRanks) -> FloatArray:
    """AP = mean over a class's positives of the precision at the threshold of its score.

    Positives tied at one score all get the precision after the whole tie, which is what
    scikit-learn's step integral over distinct thresholds gives.
    """
    precision = ranks.positives_at_or_above / ranks.predicted_at_or_above
    n_classes = len(ranks.positives_per_class)
    total = np.bincount(ranks.class_index, weights=precision, minlength=n_classes)
    average_precision = np.full(n_classes, np.nan)
    has_positive = ranks.positives_per_class > 0
    average_precision[has_positive] = total[has_positive] / ranks.positives_per_class[has_positive]
    return average_precision


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
    def per_class(cls, predicted: BoolArray, labels: BoolArray) -> _ConfusionCounts:
        true_positives = np.count_nonzero(predicted & labels, axis=0)
        return cls(
            true_positives=true_positives,
            false_positives=np.count_nonzero(predicted, axis=0) - true_positives,
            false_negatives=np.count_nonzero(labels, axis=0) - true_positives,
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


def _macro_metrics(counts: _ConfusionCounts, has_positive: BoolArray) -> dict[str, float | None]:
    return {
        "macro_precision": _mean_or_none(counts.precision()[has_positive]),
        "macro_recall": _mean_or_none(counts.recall()[has_positive]),
        "macro_f1": _mean_or_none(counts.fbeta(1.0)[has_positive]),
        "macro_f2": _mean_or_none(counts.fbeta(2.0)[has_positive]),
    }


def _micro_metrics(counts: _ConfusionCounts) -> dict[str, float]:
    pooled = counts.pooled()
    return {
        "micro_precision": float(pooled.precision()),
        "micro_recall": float(pooled.recall()),
        "micro_f1": float(pooled.fbeta(1.0)),
        "micro_f2": float(pooled.fbeta(2.0)),
    }


def _image_level_metrics(predicted: BoolArray, labels: BoolArray) -> dict[str, float]:
    """F1 of the image-level decisions "no label" (neg) and "some label" (pos).

    An image is predicted negative when no class reaches its threshold.
    """
    is_negative = np.count_nonzero(labels, axis=1) == 0
    predicted_negative = np.count_nonzero(predicted, axis=1) == 0
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
    thresholds: FloatArray,
) -> dict[str, dict[str, Any]]:
    columns = {
        "precision": counts.precision(),
        "recall": counts.recall(),
        "f1": counts.fbeta(1.0),
        "f2": counts.fbeta(2.0),
    }
    per_class: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(names):
        ap = average_precision[index]
        per_class[name] = {
            "ap": None if np.isnan(ap) else float(ap),
            **{key: float(values[index]) for key, values in columns.items()},
            "support": int(counts.support[index]),
            "threshold": float(thresholds[index]),
        }
    return per_class


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


def _mean_or_none(values: FloatArray) -> float | None:
    return float(values.mean()) if len(values) else None


def _weighted_mean_or_none(values: FloatArray, weights: FloatArray) -> float | None:
    total_weight = float(weights.sum())
    return float((values * weights).sum() / total_weight) if total_weight > 0 else None
