"""mlcbench.metrics, checked against scikit-learn and against brute force."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    fbeta_score,
    precision_recall_fscore_support,
)

from mlcbench import metrics
from mlcbench.metrics import (
    THRESHOLD_GRID,
    average_precision_per_class,
    evaluate,
    fbeta,
    grid_thresholds,
    tuned_thresholds,
)

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None)


def sklearn_ap_per_class(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """scikit-learn's AP per class, NaN where the class has no positive."""
    return np.array(
        [
            average_precision_score(labels[:, c], probs[:, c]) if labels[:, c].any() else np.nan
            for c in range(labels.shape[1])
        ]
    )


def random_split(seed: int, images: int, classes: int, positive_rate: float = 0.1):
    rng = np.random.default_rng(seed)
    probs = rng.random((images, classes))
    labels = (rng.random((images, classes)) < positive_rate).astype(np.int64)
    return probs, labels


def names(count: int) -> list[str]:
    return [f"class{index}" for index in range(count)]


@st.composite
def splits(draw, min_classes: int = 1):
    """(probs, labels); scores often drawn from a few values so ties are common."""
    images = draw(st.integers(1, 30))
    classes = draw(st.integers(min_classes, 5))
    shape = (images, classes)
    if draw(st.booleans()):
        values = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1e-12, 0.3])
    else:
        values = st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=True)
    probs = draw(arrays(np.float64, shape, elements=values))
    labels = draw(arrays(np.int8, shape, elements=st.integers(0, 1)))
    return probs, labels


# --------------------------------------------------------------------------------------------
# Average precision
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("images", "classes", "seed"), [(200, 6, 0), (1000, 3, 1), (57, 9, 2)])
def test_ap_equals_sklearn_on_random_scores(images, classes, seed):
    probs, labels = random_split(seed, images, classes, positive_rate=0.2)
    np.testing.assert_allclose(
        average_precision_per_class(probs, labels),
        sklearn_ap_per_class(probs, labels),
        rtol=0,
        atol=1e-12,
    )


def test_ap_equals_sklearn_with_many_ties():
    probs, labels = random_split(3, 500, 5, positive_rate=0.3)
    probs = np.round(probs, 1)
    np.testing.assert_allclose(
        average_precision_per_class(probs, labels),
        sklearn_ap_per_class(probs, labels),
        rtol=0,
        atol=1e-12,
    )


def test_ap_equals_sklearn_on_skewed_tiny_and_extreme_scores():
    """Scores piled near 0 and at exactly 0 and 1: the cases the log buckets and ties cover."""
    rng = np.random.default_rng(4)
    probs = rng.random((3000, 4)) ** 12
    probs[::7] = 0.0
    probs[::11] = 1.0
    probs[::13, 0] = 5e-324  # the smallest subnormal
    probs[::17, 1] = -0.0
    labels = (rng.random((3000, 4)) < 0.05).astype(np.int64)
    np.testing.assert_allclose(
        average_precision_per_class(probs, labels),
        sklearn_ap_per_class(probs, labels),
        rtol=0,
        atol=1e-12,
    )


def test_ap_over_several_class_blocks(monkeypatch):
    monkeypatch.setattr(metrics, "_CLASS_BLOCK_ELEMENTS", 64)
    probs, labels = random_split(5, 40, 30, positive_rate=0.2)
    labels[:, 9] = 0
    expected = sklearn_ap_per_class(probs, labels)
    np.testing.assert_allclose(
        average_precision_per_class(probs, labels), expected, rtol=0, atol=1e-12
    )


def test_class_without_positive_is_nan_and_left_out_of_map():
    probs, labels = random_split(6, 100, 4, positive_rate=0.2)
    labels[:, 2] = 0
    ap = average_precision_per_class(probs, labels)
    assert np.isnan(ap[2])
    assert not np.isnan(ap[[0, 1, 3]]).any()
    result = evaluate(probs, labels, 0.5, names(4))
    assert result["map"] == pytest.approx(np.mean(ap[[0, 1, 3]]), abs=1e-12)
    assert result["classes_without_positives"] == ["class2"]
    assert result["per_class"]["class2"]["ap"] is None


def test_ap_single_image():
    probs = np.array([[0.3, 0.9, 0.0]])
    labels = np.array([[1, 0, 1]])
    np.testing.assert_array_equal(average_precision_per_class(probs, labels), [1.0, np.nan, 1.0])


def test_ap_all_negative_split():
    probs, _ = random_split(7, 50, 3)
    ap = average_precision_per_class(probs, np.zeros((50, 3)))
    assert np.isnan(ap).all()
    assert evaluate(probs, np.zeros((50, 3)), 0.5, names(3))["map"] is None


def test_ap_accepts_float32_probs_and_bool_or_float_labels():
    probs, labels = random_split(8, 300, 3, positive_rate=0.2)
    probs32 = probs.astype(np.float32)
    expected = sklearn_ap_per_class(probs32, labels)
    for given_labels in (labels.astype(bool), labels.astype(np.float32)):
        np.testing.assert_allclose(
            average_precision_per_class(probs32, given_labels), expected, rtol=0, atol=1e-12
        )


@PROPERTY_SETTINGS
@given(splits())
def test_ap_property_equals_sklearn(split):
    probs, labels = split
    np.testing.assert_allclose(
        average_precision_per_class(probs, labels),
        sklearn_ap_per_class(probs, labels),
        rtol=0,
        atol=1e-12,
    )


# --------------------------------------------------------------------------------------------
# Thresholded metrics against scikit-learn
# --------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
# scikit-learn reads a single label column as a binary target, not as multilabel.
@given(splits(min_classes=2), st.sampled_from([0.5, 0.3, 0.25, 0.75, 1.0]))
def test_per_class_and_micro_metrics_equal_sklearn(split, threshold):
    probs, labels = split
    classes = labels.shape[1]
    predicted = (probs >= threshold).astype(np.int64)
    result = evaluate(probs, labels, threshold, names(classes))

    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, average=None, zero_division=0
    )
    f2 = fbeta_score(labels, predicted, beta=2, average=None, zero_division=0)
    for index, name in enumerate(names(classes)):
        row = result["per_class"][name]
        assert row["precision"] == pytest.approx(precision[index], abs=1e-12)
        assert row["recall"] == pytest.approx(recall[index], abs=1e-12)
        assert row["f1"] == pytest.approx(f1[index], abs=1e-12)
        assert row["f2"] == pytest.approx(f2[index], abs=1e-12)
        assert row["support"] == support[index]

    has_positive = support > 0
    if has_positive.any():
        assert result["macro_f1"] == pytest.approx(f1[has_positive].mean(), abs=1e-12)
        assert result["macro_f2"] == pytest.approx(f2[has_positive].mean(), abs=1e-12)
        assert result["macro_precision"] == pytest.approx(precision[has_positive].mean(), abs=1e-12)
        assert result["macro_recall"] == pytest.approx(recall[has_positive].mean(), abs=1e-12)
    else:
        assert result["macro_f1"] is None

    micro = precision_recall_fscore_support(labels, predicted, average="micro", zero_division=0)
    assert result["micro_precision"] == pytest.approx(micro[0], abs=1e-12)
    assert result["micro_recall"] == pytest.approx(micro[1], abs=1e-12)
    assert result["micro_f1"] == pytest.approx(micro[2], abs=1e-12)
    micro_f2 = fbeta_score(labels, predicted, beta=2, average="micro", zero_division=0)
    assert result["micro_f2"] == pytest.approx(micro_f2, abs=1e-12)

    is_negative = ~labels.any(axis=1)
    predicted_negative = ~predicted.any(axis=1)
    assert result["f1_neg"] == pytest.approx(
        f1_score(is_negative, predicted_negative, zero_division=0), abs=1e-12
    )
    assert result["f1_pos"] == pytest.approx(
        f1_score(~is_negative, ~predicted_negative, zero_division=0), abs=1e-12
    )


def test_per_class_thresholds_are_applied_per_column():
    probs = np.array([[0.6, 0.6], [0.2, 0.2]])
    labels = np.array([[1, 1], [0, 1]])
    result = evaluate(probs, labels, [0.5, 0.1], ["a", "b"])
    assert result["per_class"]["a"]["recall"] == 1.0
    assert result["per_class"]["b"]["recall"] == 1.0
    assert result["per_class"]["b"]["threshold"] == 0.1


# --------------------------------------------------------------------------------------------
# Threshold search
# --------------------------------------------------------------------------------------------


def exact_fbeta(predicted: np.ndarray, actual: np.ndarray, beta: float) -> Fraction:
    true_positives = int(np.count_nonzero(predicted & actual))
    if true_positives == 0:
        return Fraction(0)
    false_positives = int(np.count_nonzero(predicted & ~actual))
    false_negatives = int(np.count_nonzero(~predicted & actual))
    weighted_true_positives = (1 + Fraction(beta) ** 2) * true_positives
    weighted_false_negatives = Fraction(beta) ** 2 * false_negatives
    return weighted_true_positives / (
        weighted_true_positives + weighted_false_negatives + false_positives
    )


def brute_force_thresholds(probs, labels, beta, candidates=None) -> list[float]:
    """Exact (rational) F-beta at every candidate; ties go to the largest threshold."""
    chosen = []
    for column in range(probs.shape[1]):
        scores, actual = probs[:, column], labels[:, column].astype(bool)
        if not actual.any():
            chosen.append(0.5)
            continue
        best_value, best_threshold = Fraction(-1), math.nan
        # Ascending with >=, so among equal values the largest threshold is kept.
        for threshold in sorted(set(scores.tolist()) if candidates is None else candidates):
            value = exact_fbeta(scores >= threshold, actual, beta)
            if value >= best_value:
                best_value, best_threshold = value, threshold
        chosen.append(best_threshold)
    return chosen


@PROPERTY_SETTINGS
@given(splits(), st.sampled_from([1.0, 2.0, 0.5, 0.3]))
def test_tuned_thresholds_equal_brute_force(split, beta):
    probs, labels = split
    np.testing.assert_array_equal(
        tuned_thresholds(probs, labels, beta), brute_force_thresholds(probs, labels, beta)
    )


@PROPERTY_SETTINGS
@given(splits(), st.sampled_from([1.0, 2.0]))
def test_grid_thresholds_equal_brute_force(split, beta):
    probs, labels = split
    np.testing.assert_array_equal(
        grid_thresholds(probs, labels, beta),
        brute_force_thresholds(probs, labels, beta, candidates=THRESHOLD_GRID),
    )


def test_tuned_threshold_tie_takes_the_largest_threshold():
    # At 0.9: TP 1, FP 0, FN 1 -> F1 2/3. At 0.5: TP 2, FP 2, FN 0 -> F1 2/3 as well.
    probs = np.array([[0.9], [0.8], [0.7], [0.5]])
    labels = np.array([[1], [0], [0], [1]])
    assert tuned_thresholds(probs, labels, 1.0).tolist() == [0.9]
    # F2 weighs recall more, so including the second positive wins.
    assert tuned_thresholds(probs, labels, 2.0).tolist() == [0.5]


def test_class_without_positive_in_val_gets_half():
    probs, labels = random_split(9, 60, 3, positive_rate=0.3)
    labels[:, 1] = 0
    assert tuned_thresholds(probs, labels, 1.0)[1] == 0.5
    assert grid_thresholds(probs, labels, 1.0)[1] == 0.5


def test_tuned_thresholds_on_a_large_split_equal_brute_force():
    rng = np.random.default_rng(10)
    probs = np.round(rng.random((2000, 3)) ** 3, 3)
    labels = (rng.random((2000, 3)) < probs * 0.5 + 0.02).astype(np.int64)
    np.testing.assert_array_equal(
        tuned_thresholds(probs, labels, 2.0), brute_force_thresholds(probs, labels, 2.0)
    )


def test_threshold_grid_is_005_to_095():
    assert THRESHOLD_GRID[0] == 0.05
    assert THRESHOLD_GRID[1] == 0.1
    assert THRESHOLD_GRID[-1] == 0.95
    assert len(THRESHOLD_GRID) == 19


# --------------------------------------------------------------------------------------------
# Image-level metrics, CIW-F2 and the output contract
# --------------------------------------------------------------------------------------------

HAND_PROBS = np.array(
    [
        [0.9, 0.2, 0.1],  # labels a    -> predicts a
        [0.4, 0.7, 0.1],  # labels b    -> predicts b
        [0.1, 0.1, 0.1],  # no label    -> predicts nothing
        [0.6, 0.3, 0.7],  # no label    -> predicts a and c: a false alarm
        [0.3, 0.8, 0.1],  # labels a, b -> predicts b
        [0.2, 0.45, 0.1],  # no label   -> predicts nothing
    ]
)
HAND_LABELS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0]])
HAND_NAMES = ["a", "b", "c"]


def test_image_level_metrics_by_hand():
    result = evaluate(HAND_PROBS, HAND_LABELS, 0.5, HAND_NAMES)
    assert result["images"] == 6
    assert result["negatives"] == 3
    # Negative images predicted negative: 2 (TP); positive images predicted negative: 0 (FP);
    # negative images predicted positive: 1 (FN).
    assert result["f1_neg"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))
    # Positive images predicted positive: 3 (TP); negative predicted positive: 1 (FP).
    assert result["f1_pos"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 0))
    assert result["neg_false_alarm_rate"] == pytest.approx(1 / 3)


def test_macro_and_micro_by_hand():
    result = evaluate(HAND_PROBS, HAND_LABELS, 0.5, HAND_NAMES)
    # a: TP 1, FP 1, FN 1; b: TP 2; c: FP 1 and no positive, so left out of macro averages.
    assert result["classes_without_positives"] == ["c"]
    assert result["macro_f1"] == pytest.approx((0.5 + 1.0) / 2)
    assert result["macro_recall"] == pytest.approx((0.5 + 1.0) / 2)
    assert result["micro_precision"] == pytest.approx(3 / 5)
    assert result["micro_recall"] == pytest.approx(3 / 4)
    assert result["micro_f1"] == pytest.approx(2 / 3)
    assert result["per_class"]["c"] == {
        "ap": None,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "f2": 0.0,
        "support": 0,
        "threshold": 0.5,
    }


def test_ciw_f2_by_hand():
    # F2: a = 5·1 / (5·1 + 4·1 + 1) = 0.5, b = 1.0; c has no positive, so its weight is ignored.
    result = evaluate(
        HAND_PROBS, HAND_LABELS, 0.5, HAND_NAMES, class_weights={"a": 1.0, "b": 0.25, "c": 10.0}
    )
    assert result["ciw_f2"] == pytest.approx((1.0 * 0.5 + 0.25 * 1.0) / 1.25)
    assert "ciw_f2" not in evaluate(HAND_PROBS, HAND_LABELS, 0.5, HAND_NAMES)


def test_no_negative_image_gives_zero_false_alarm_rate():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    labels = np.array([[1, 0], [0, 1]])
    result = evaluate(probs, labels, 0.5, ["a", "b"])
    assert result["negatives"] == 0
    assert result["neg_false_alarm_rate"] == 0.0
    assert result["f1_neg"] == 0.0
    assert result["f1_pos"] == 1.0


def walk_values(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from walk_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_values(item)
    else:
        yield value


@pytest.mark.parametrize(
    ("probs", "labels"),
    [
        (np.zeros((4, 3)), np.zeros((4, 3))),  # nothing positive, nothing predicted
        (np.ones((4, 3)), np.ones((4, 3))),  # everything positive and predicted
        (np.ones((4, 3)), np.zeros((4, 3))),  # only false alarms
        (np.zeros((4, 3)), np.ones((4, 3))),  # only misses
        (np.full((1, 3), 0.5), np.array([[0, 1, 0]])),  # one image
        (np.zeros((0, 3)), np.zeros((0, 3))),  # no image at all
    ],
)
def test_degenerate_inputs_give_json_without_nan(probs, labels):
    result = evaluate(probs, labels, 0.5, HAND_NAMES, class_weights={"a": 1, "b": 1, "c": 1})
    json.dumps(result, allow_nan=False)
    for value in walk_values(result):
        assert value is None or isinstance(value, (str, int, float))
        assert not isinstance(value, np.generic)
        if isinstance(value, float):
            assert math.isfinite(value)


def test_output_is_plain_json_with_tuned_thresholds():
    probs, labels = random_split(11, 80, 3, positive_rate=0.2)
    thresholds = tuned_thresholds(probs, labels, 2.0)
    result = evaluate(probs, labels, thresholds, HAND_NAMES, class_weights={"a": 1, "b": 2, "c": 3})
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert [result["per_class"][name]["threshold"] for name in HAND_NAMES] == thresholds.tolist()


# --------------------------------------------------------------------------------------------
# fbeta and input checks
# --------------------------------------------------------------------------------------------


def test_fbeta_is_nan_free_and_matches_the_formula():
    assert fbeta(0.0, 0.0, 1.0) == 0.0
    assert isinstance(fbeta(0.5, 0.25, 2.0), float)
    assert fbeta(0.5, 0.25, 2.0) == pytest.approx(5 * 0.5 * 0.25 / (4 * 0.5 + 0.25))
    np.testing.assert_allclose(fbeta([0.0, 1.0, 0.5], [0.0, 1.0, 1.0], 1.0), [0.0, 1.0, 2 / 3])


@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        (np.zeros(3), np.zeros(3), "2-D"),
        (np.zeros((3, 2)), np.zeros((3, 3)), "shape"),
        (np.full((2, 2), np.nan), np.zeros((2, 2)), r"\[0, 1\]"),
        (np.full((2, 2), 1.5), np.zeros((2, 2)), r"\[0, 1\]"),
        (np.zeros((2, 2)), np.full((2, 2), 2), "0 and 1"),
    ],
)
def test_bad_arrays_raise_value_error(probs, labels, message):
    with pytest.raises(ValueError, match=message):
        average_precision_per_class(probs, labels)
    with pytest.raises(ValueError, match=message):
        tuned_thresholds(probs, labels, 1.0)


def test_bad_evaluate_arguments_raise_value_error():
    with pytest.raises(ValueError, match="one per class"):
        evaluate(HAND_PROBS, HAND_LABELS, [0.5, 0.5], HAND_NAMES)
    with pytest.raises(ValueError, match="3 classes"):
        evaluate(HAND_PROBS, HAND_LABELS, 0.5, ["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        evaluate(HAND_PROBS, HAND_LABELS, 0.5, ["a", "a", "b"])
    with pytest.raises(ValueError, match="missing"):
        evaluate(HAND_PROBS, HAND_LABELS, 0.5, HAND_NAMES, class_weights={"a": 1, "b": 1})
    with pytest.raises(ValueError, match="beta"):
        tuned_thresholds(HAND_PROBS, HAND_LABELS, -1.0)
