"""Paired bootstrap gains: zero for identical scores, clearly positive for a better model,
and the point estimate equal to the plain metric difference."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from mlcbench.bootstrap import GAIN_METRICS, Pair, paired_gains


def data(seed: int = 0, images: int = 400, classes: int = 4):
    rng = np.random.default_rng(seed)
    labels = (rng.random((images, classes)) < 0.15) & (rng.random((images, 1)) < 0.4)
    weak = np.clip(0.25 * labels + 0.75 * rng.random((images, classes)), 0, 1)
    strong = np.clip(0.6 * labels + 0.45 * rng.random((images, classes)), 0, 1)
    return labels, weak, strong


def test_identical_scores_give_zero_with_an_interval_holding_zero() -> None:
    labels, weak, _ = data()
    gains = paired_gains([Pair(weak, weak.copy())], labels, resamples=200)
    for metric in GAIN_METRICS:
        gain = gains[metric]
        assert gain.delta == 0 and gain.low <= 0 <= gain.high
        assert not gain.significant and gain.p_value == 1.0


def test_a_clearly_better_model_gets_an_interval_above_zero() -> None:
    labels, weak, strong = data(1)
    gains = paired_gains([Pair(weak, strong)], labels, resamples=300)
    for metric in GAIN_METRICS:
        assert gains[metric].low > 0, metric
        assert gains[metric].significant and gains[metric].p_value < 0.01


def test_point_estimates_are_the_seed_mean_of_plain_metric_differences() -> None:
    labels, weak, strong = data(2)
    _, weak_b, strong_b = data(3)
    gains = paired_gains([Pair(weak, strong), Pair(weak_b, strong_b)], labels, resamples=50)

    def mean_ap(scores):
        return average_precision_score(labels, scores, average="macro")

    def macro_f1(scores):
        return f1_score(labels, scores >= 0.5, average="macro", zero_division=0)

    expected_map = np.mean([mean_ap(strong) - mean_ap(weak), mean_ap(strong_b) - mean_ap(weak_b)])
    expected_f1 = np.mean(
        [macro_f1(strong) - macro_f1(weak), macro_f1(strong_b) - macro_f1(weak_b)]
    )
    assert gains["map"].delta == pytest.approx(expected_map, abs=1e-12)
    assert gains["macro_f1"].delta == pytest.approx(expected_f1, abs=1e-12)


def test_resampling_is_seeded() -> None:
    labels, weak, strong = data(4)
    first = paired_gains([Pair(weak, strong)], labels, resamples=100, seed=5)
    again = paired_gains([Pair(weak, strong)], labels, resamples=100, seed=5)
    assert first == again
