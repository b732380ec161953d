"""Time mlcbench's full metric suite against scikit-learn's macro average precision alone.

On N = 100,000 images × C = 80 classes (uniform random scores, 3 % positives), in one run and
interleaved:

- scikit-learn: ``average_precision_score(labels, scores, average="macro")``;
- mlcbench, the full suite on the same arrays: checks, ranking, mAP, ROC-AUC, every thresholded
  metric (per class, macro, micro, F1-neg/F1-pos, negative false-alarm rate, and all of it
  again on the positive images) at the fixed 0.5, and the exact val-tuned F1 and F2
  thresholds, searched on the arrays as val split and applied to them as test split.

Target: the suite takes at most 0.25× scikit-learn's time, with values equal to scikit-learn's
within 1e-9. For scale it also times the suite with a separate val split of the same size
(two splits to rank) and on one thread. Values are then checked against scikit-learn: AP,
ROC-AUC, precision, recall, F1, F2 (per class, macro, micro), and, per class, the F-beta at the
tuned threshold against the best F-beta on scikit-learn's precision-recall curve.

    python benchmarks/speed/metrics_speed.py [--images 100000] [--classes 80] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    fbeta_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)

from mlcbench import metrics
from mlcbench.evaluation import ThresholdPolicy, evaluate_policies
from mlcbench.metrics import RankedSplit

POLICIES = (
    ThresholdPolicy.fixed_threshold(0.5),
    ThresholdPolicy.val_tuned(1.0),
    ThresholdPolicy.val_tuned(2.0),
)
TOLERANCE = 1e-9


def random_split(
    rng: np.random.Generator, images: int, classes: int, positives: float
) -> tuple[np.ndarray, np.ndarray]:
    return rng.random((images, classes)), rng.random((images, classes)) < positives


def full_suite(
    test: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray] | None, names: list[str]
) -> dict[str, dict[str, Any]]:
    """Everything from raw arrays: both splits are checked and ranked inside the timing."""
    test_split = RankedSplit(*test)
    val_split = test_split if val is None else RankedSplit(*val)
    return evaluate_policies({"test": test_split}, names, POLICIES, val=val_split)["test"]


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def sklearn_differences(
    probs: np.ndarray, labels: np.ndarray, results: dict[str, dict[str, Any]], names: list[str]
) -> dict[str, float]:
    """Largest |mlcbench − scikit-learn| per metric family."""
    fixed = results["threshold_0.5"]
    per_class = fixed["per_class"]
    differences: dict[str, float] = {}

    def record(family: str, ours: Any, theirs: Any) -> None:
        gap = float(np.max(np.abs(np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float))))
        differences[family] = max(differences.get(family, 0.0), gap)

    record("mAP", fixed["map"], average_precision_score(labels, probs, average="macro"))
    record(
        "AP per class",
        [per_class[n]["ap"] for n in names],
        average_precision_score(labels, probs, average=None),
    )
    record(
        "ROC-AUC per class",
        [per_class[n]["roc_auc"] for n in names],
        roc_auc_score(labels, probs, average=None),
    )
    predicted = probs >= 0.5
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, average=None, zero_division=0
    )
    f2 = fbeta_score(labels, predicted, beta=2, average=None, zero_division=0)
    for key, theirs in (("precision", precision), ("recall", recall), ("f1", f1), ("f2", f2)):
        record("P/R/F1/F2 per class", [per_class[n][key] for n in names], theirs)
    record("macro F1/F2", [fixed["macro_f1"], fixed["macro_f2"]], [f1.mean(), f2.mean()])
    micro = precision_recall_fscore_support(labels, predicted, average="micro", zero_division=0)
    micro_f2 = fbeta_score(labels, predicted, beta=2, average="micro", zero_division=0)
    record(
        "micro P/R/F1/F2",
        [fixed[f"micro_{k}"] for k in ("precision", "recall", "f1", "f2")],
        [micro[0], micro[1], micro[2], micro_f2],
    )
    # The tuned threshold must reach the best F-beta of any threshold on the PR curve.
    for beta in (1.0, 2.0):
        tuned = results[f"val_tuned_f{beta:g}"]["per_class"]
        best = []
        for column in range(probs.shape[1]):
            curve_precision, curve_recall, _ = precision_recall_curve(
                labels[:, column], probs[:, column]
            )
            best.append(float(np.max(metrics.fbeta(curve_precision, curve_recall, beta))))
        key = "f1" if beta == 1.0 else "f2"
        record("tuned Fβ vs best on PR curve", [tuned[n][key] for n in names], best)
    return differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--positives", type=float, default=0.03)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    test = random_split(rng, args.images, args.classes, args.positives)
    val = random_split(rng, args.images, args.classes, args.positives)
    names = [f"class{index}" for index in range(args.classes)]
    threads = metrics._MAX_RANKING_THREADS

    def one_thread(function: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            metrics._MAX_RANKING_THREADS = 1
            try:
                return function()
            finally:
                metrics._MAX_RANKING_THREADS = threads

        return run

    candidates: dict[str, Callable[[], object]] = {
        "sklearn": lambda: average_precision_score(*test[::-1], average="macro"),
        "suite": lambda: full_suite(test, None, names),
        "suite, separate val": lambda: full_suite(test, val, names),
        "suite, 1 thread": one_thread(lambda: full_suite(test, None, names)),
        "suite, separate val, 1 thread": one_thread(lambda: full_suite(test, val, names)),
    }
    for function in candidates.values():  # warm-up
        function()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.repeats):  # interleaved, so drift hits every candidate alike
        for name, function in candidates.items():
            samples[name].append(timed(function))
    median = {name: statistics.median(values) for name, values in samples.items()}
    baseline = median["sklearn"]

    print(
        f"N={args.images:,} images × C={args.classes} classes, {args.positives:.0%} positives, "
        f"uniform random scores; median of {args.repeats} interleaved repeats; "
        f"{os.cpu_count()} CPU cores, ranking on up to {threads} threads"
    )
    print(f"  scikit-learn average_precision_score(macro)     {baseline:7.3f} s")
    rows = (
        ("suite", "mlcbench full suite (val = test arrays)"),
        ("suite, separate val", "  with a separate val split of N images"),
        ("suite, 1 thread", "mlcbench full suite, 1 thread"),
        ("suite, separate val, 1 thread", "  with a separate val split, 1 thread"),
    )
    for key, title in rows:
        print(f"  {title:47s} {median[key]:7.3f} s   ratio {median[key] / baseline:.3f}")
    print(f"ratio full suite / scikit-learn AP: {median['suite'] / baseline:.3f}  (target ≤ 0.25)")
    results = full_suite(test, None, names)
    differences = sklearn_differences(*test, results, names)
    worst = max(differences.values())
    print(f"max |mlcbench − scikit-learn| = {worst:.1e}  (target ≤ {TOLERANCE:g})")
    for family, gap in differences.items():
        print(f"  {family:30s} {gap:.1e}")


if __name__ == "__main__":
    main()
