"""Is a loss's gain real? Paired bootstrap over test images, pooled over seeds.

Every resample draws one multiset of test images and scores both losses of every seed on it,
so the pairing of images (and of seeds) is kept; the statistic is the seed-mean difference
``metric(X+aux) − metric(X)``. Thresholded metrics use resample weights over all resamples at
once (a matrix product of weights and 0/1 outcomes); mAP is recomputed per resample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlcbench.metrics import average_precision_per_class, fbeta

GAIN_METRICS = ("macro_f1", "macro_f2", "map", "f1_neg")
THRESHOLD = 0.5
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Gain:
    """The seed-mean difference of one metric, its confidence interval and p-value."""

    delta: float
    low: float
    high: float
    p_value: float

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0."""
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Pair:
    """The test probabilities of a loss and of that loss plus an auxiliary term, one seed."""

    baseline: np.ndarray
    treated: np.ndarray


def paired_gains(
    pairs: Sequence[Pair], labels: np.ndarray, *, resamples: int = 1000, seed: int = 0
) -> dict[str, Gain]:
    """Δ = treated − baseline (seed mean) per metric of ``GAIN_METRICS``, with a
    percentile-bootstrap interval over test images and a two-sided p-value."""
    if not pairs:
        raise ValueError("paired_gains needs at least one pair")
    labels = np.asarray(labels).astype(bool)
    images = labels.shape[0]
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(images, np.full(images, 1.0 / images), size=resamples)
    full = np.ones((1, images))
    observed: dict[str, list[float]] = {metric: [] for metric in GAIN_METRICS}
    samples: dict[str, list[np.ndarray]] = {metric: [] for metric in GAIN_METRICS}
    for pair in pairs:
        for metric, (on_full, on_resamples) in _differences(pair, labels, full, weights).items():
            observed[metric].append(float(on_full[0]))
            samples[metric].append(on_resamples)
    gains = {}
    for metric in GAIN_METRICS:
        delta = float(np.mean(observed[metric]))
        distribution = np.mean(samples[metric], axis=0)
        alpha = (1.0 - CONFIDENCE) / 2
        low, high = np.quantile(distribution, [alpha, 1.0 - alpha])
        # Two-sided, with the +1 correction: a p-value is never reported as exactly 0.
        tail = min(np.sum(distribution <= 0), np.sum(distribution >= 0))
        p_value = min(1.0, 2.0 * (tail + 1) / (resamples + 1))
        gains[metric] = Gain(delta, float(low), float(high), p_value)
    return gains


def _differences(
    pair: Pair, labels: np.ndarray, full: np.ndarray, weights: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    treated = _thresholded(pair.treated, labels, full, weights)
    baseline = _thresholded(pair.baseline, labels, full, weights)
    result = {
        metric: (treated[metric][0] - baseline[metric][0], treated[metric][1] - baseline[metric][1])
        for metric in treated
    }
    result["map"] = (
        np.array([_mean_ap(pair.treated, labels) - _mean_ap(pair.baseline, labels)]),
        np.array(
            [
                _mean_ap(pair.treated[index], labels[index])
                - _mean_ap(pair.baseline[index], labels[index])
                for index in _indices(weights)
            ]
        ),
    )
    return result


def _thresholded(
    probabilities: np.ndarray, labels: np.ndarray, full: np.ndarray, weights: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Macro F1/F2 over classes with a positive, and F1-neg, under each weighting."""
    predicted = probabilities >= THRESHOLD
    outcomes = np.concatenate(
        [predicted & labels, predicted & ~labels, ~predicted & labels], axis=1
    ).astype(np.float64)
    predicted_negative = ~predicted.any(axis=1)
    negative = ~labels.any(axis=1)
    image_outcomes = np.stack(
        [
            predicted_negative & negative,
            predicted_negative & ~negative,
            ~predicted_negative & negative,
        ],
        axis=1,
    ).astype(np.float64)
    result: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, beta in (("macro_f1", 1.0), ("macro_f2", 2.0)):
        result[name] = tuple(  # type: ignore[assignment]
            _macro_fbeta(w @ outcomes, labels.shape[1], beta) for w in (full, weights)
        )
    result["f1_neg"] = tuple(  # type: ignore[assignment]
        _binary_f1(w @ image_outcomes) for w in (full, weights)
    )
    return result


def _macro_fbeta(counts: np.ndarray, classes: int, beta: float) -> np.ndarray:
    tp, fp, fn = counts[:, :classes], counts[:, classes : 2 * classes], counts[:, 2 * classes :]
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
    scores = fbeta(precision, recall, beta)
    has_positive = (tp + fn) > 0
    totals = np.where(has_positive, scores, 0.0).sum(axis=1)
    present = has_positive.sum(axis=1)
    return np.divide(totals, present, out=np.zeros_like(totals), where=present > 0)


def _binary_f1(counts: np.ndarray) -> np.ndarray:
    tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def _mean_ap(probabilities: np.ndarray, labels: np.ndarray) -> float:
    per_class = average_precision_per_class(probabilities, labels)
    return float(np.nanmean(per_class)) if np.isfinite(per_class).any() else 0.0


def _indices(weights: np.ndarray) -> list[np.ndarray]:
    """Each resample's weights as the image indices they repeat."""
    return [np.repeat(np.arange(weights.shape[1]), row) for row in weights]
