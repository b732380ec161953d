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
    roc_auc_score,
)

from mlcbench import metrics
from mlcbench.metrics import (
    SEWERML_CLASS_WEIGHTS,
    THRESHOLD_GRID,
    RankedSplit,
    average_precision_per_class,
    evaluate,
    fbeta,
    grid_thresholds,
    roc_auc_per_class,
    tuned_thresholds,
)

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)


def sklearn_ap_per_class(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """scikit-learn's AP per class, NaN where the class has no positive."""
    return np.array(
        [
            average_precision_score(labels[:, c], probs[:, c]) if labels[:, c].any() else np.nan
            for c in range(labels.shape[1])
        ]
    )


def sklearn_roc_auc_per_class(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """scikit-learn's ROC-AUC per class, NaN where the class lacks a positive or a negative."""
    return np.array(
        [
            roc_auc_score(labels[:, c], probs[:, c])
            if 0 < labels[:, c].sum() < len(labels)
            else np.nan
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
    """(probs, labels); scores often drawn from a few values so ties are common.

    Single-image splits, all-negative splits and classes without a positive (or without a
    negative) are each drawn often, not left to chance.
    """
    images = draw(st.one_of(st.just(1), st.integers(1, 30)))
    classes = draw(st.integers(min_classes, 5))
    shape = (images, classes)
    if draw(st.booleans()):
        values = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1e-12, 0.3])
    else:
        values = st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=True)
    probs = draw(arrays(np.float64, shape, elements=values))
    labels = draw(arrays(np.int8, shape, elements=st.integers(0, 1)))
    shape_of_labels = draw(st.sampled_from(["random", "all negative", "constant class"]))
    if shape_of_labels == "all negative":
        labels[:] = 0
    elif shape_of_labels == "constant class":
        labels[:, draw(st.integers(0, classes - 1))] = draw(st.integers(0, 1))
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
        "roc_auc": None,
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


# --------------------------------------------------------------------------------------------
# ROC-AUC
# --------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(splits())
def test_roc_auc_property_equals_sklearn(split):
    probs, labels = split
    np.testing.assert_allclose(
        roc_auc_per_class(probs, labels),
        sklearn_roc_auc_per_class(probs, labels),
        rtol=0,
        atol=1e-12,
    )


def test_roc_auc_equals_sklearn_with_ties_and_over_several_class_blocks(monkeypatch):
    monkeypatch.setattr(metrics, "_CLASS_BLOCK_ELEMENTS", 64)
    probs, labels = random_split(12, 300, 20, positive_rate=0.2)
    probs = np.round(probs, 1)
    labels[:, 3] = 0
    labels[:, 4] = 1
    expected = sklearn_roc_auc_per_class(probs, labels)
    assert np.isnan(expected[[3, 4]]).all()
    np.testing.assert_allclose(roc_auc_per_class(probs, labels), expected, rtol=0, atol=1e-12)


def test_roc_auc_in_evaluate_averages_classes_with_both_kinds_and_names_the_rest():
    probs, labels = random_split(13, 120, 4, positive_rate=0.3)
    labels[:, 1] = 1
    labels[:, 2] = 0
    result = evaluate(probs, labels, 0.5, names(4))
    expected = sklearn_roc_auc_per_class(probs, labels)
    assert result["roc_auc"] == pytest.approx(np.nanmean(expected), abs=1e-12)
    assert result["classes_without_negatives"] == ["class1"]
    assert result["classes_without_positives"] == ["class2"]
    assert result["per_class"]["class1"]["roc_auc"] is None
    assert result["per_class"]["class0"]["roc_auc"] == pytest.approx(expected[0], abs=1e-12)


# --------------------------------------------------------------------------------------------
# Metrics restricted to positive images
# --------------------------------------------------------------------------------------------


def assert_positive_image_block_equals_sklearn(probs, labels, thresholds, result):
    """The ``positive_images`` block equals scikit-learn on the rows that carry a label."""
    rows = labels.any(axis=1)
    block = result["positive_images"]
    assert block["images"] == int(rows.sum())
    sub_probs, sub_labels = probs[rows], labels[rows]
    if not rows.any():
        assert block["map"] is None
        assert block["roc_auc"] is None
        return
    ap = sklearn_ap_per_class(sub_probs, sub_labels)
    roc = sklearn_roc_auc_per_class(sub_probs, sub_labels)
    predicted = (sub_probs >= thresholds).astype(np.int64)
    precision, recall, f1, _ = precision_recall_fscore_support(
        sub_labels, predicted, average=None, zero_division=0
    )
    f2 = fbeta_score(sub_labels, predicted, beta=2, average=None, zero_division=0)
    has_positive = sub_labels.sum(axis=0) > 0
    assert block["map"] == pytest.approx(ap[has_positive].mean(), abs=1e-12)
    if np.isnan(roc).all():
        assert block["roc_auc"] is None
    else:
        assert block["roc_auc"] == pytest.approx(np.nanmean(roc), abs=1e-12)
    assert block["macro_f1"] == pytest.approx(f1[has_positive].mean(), abs=1e-12)
    assert block["macro_f2"] == pytest.approx(f2[has_positive].mean(), abs=1e-12)
    assert block["macro_precision"] == pytest.approx(precision[has_positive].mean(), abs=1e-12)
    micro = precision_recall_fscore_support(sub_labels, predicted, average="micro", zero_division=0)
    assert block["micro_precision"] == pytest.approx(micro[0], abs=1e-12)
    assert block["micro_f1"] == pytest.approx(micro[2], abs=1e-12)
    for index, name in enumerate(names(labels.shape[1])):
        row = block["per_class"][name]
        assert row["precision"] == pytest.approx(precision[index], abs=1e-12)
        assert row["recall"] == pytest.approx(recall[index], abs=1e-12)
        assert row["f2"] == pytest.approx(f2[index], abs=1e-12)
        if has_positive[index]:
            assert row["ap"] == pytest.approx(ap[index], abs=1e-12)
        if np.isnan(roc[index]):
            assert row["roc_auc"] is None
        else:
            assert row["roc_auc"] == pytest.approx(roc[index], abs=1e-12)


@PROPERTY_SETTINGS
@given(splits(min_classes=2), st.sampled_from([0.5, 0.25, 1.0]))
def test_positive_image_metrics_equal_sklearn_on_the_positive_rows(split, threshold):
    probs, labels = split
    result = evaluate(probs, labels, threshold, names(labels.shape[1]))
    assert_positive_image_block_equals_sklearn(probs, labels, threshold, result)


@pytest.mark.parametrize("negative_share", [0.9, 0.1])
def test_positive_image_metrics_whichever_image_set_is_smaller(monkeypatch, negative_share):
    """The positive-image counts come from the smaller image set; both ways give the same."""
    monkeypatch.setattr(metrics, "_CLASS_BLOCK_ELEMENTS", 256)
    rng = np.random.default_rng(14)
    probs = np.round(rng.random((400, 12)), 2)
    labels = (rng.random((400, 12)) < 0.2) & (rng.random((400, 1)) > negative_share)
    thresholds = rng.random(12)
    result = evaluate(probs, labels, thresholds, names(12))
    assert_positive_image_block_equals_sklearn(probs, labels, thresholds, result)


# --------------------------------------------------------------------------------------------
# RankedSplit, the grid edge cases and Sewer-ML's weights
# --------------------------------------------------------------------------------------------


def test_ranked_split_answers_like_the_functions_and_can_be_reused():
    probs, labels = random_split(15, 500, 5, positive_rate=0.1)
    split = RankedSplit(probs, labels)
    thresholds = split.tuned_thresholds(2.0)
    np.testing.assert_array_equal(thresholds, tuned_thresholds(probs, labels, 2.0))
    np.testing.assert_array_equal(split.grid_thresholds(1.0), grid_thresholds(probs, labels, 1.0))
    first = split.evaluate(thresholds, names(5))
    assert split.evaluate(thresholds, names(5)) == first
    assert first == evaluate(probs, labels, thresholds, names(5))
    # Callers get copies: changing one leaves the split's cached values alone.
    split.average_precision()[:] = 0
    np.testing.assert_array_equal(
        split.average_precision(), average_precision_per_class(probs, labels)
    )


def test_grid_counts_scores_exactly_at_and_next_to_grid_values():
    grid = np.asarray(THRESHOLD_GRID)
    below = np.nextafter(grid, 0.0)
    above = np.nextafter(grid, 1.0)
    scores = np.concatenate([grid, below, above, [0.0, 1.0]])
    probs = np.stack([scores, scores[::-1]], axis=1)
    levels = metrics._grid_levels(probs, grid)
    expected = (probs[:, :, None] >= grid).sum(axis=2)
    np.testing.assert_array_equal(levels, expected)


def test_single_image_split():
    probs = np.array([[0.7, 0.2, 0.5]])
    labels = np.array([[1, 0, 0]])
    result = evaluate(probs, labels, 0.5, HAND_NAMES)
    assert result["map"] == 1.0
    assert result["roc_auc"] is None
    assert result["classes_without_negatives"] == ["a"]
    assert result["positive_images"]["images"] == 1
    assert result["positive_images"]["micro_precision"] == 0.5
    assert tuned_thresholds(probs, labels, 1.0).tolist() == [0.7, 0.5, 0.5]


def test_sewerml_class_weights_are_the_design_table():
    assert len(SEWERML_CLASS_WEIGHTS) == 17
    assert SEWERML_CLASS_WEIGHTS["RB"] == 1.0
    assert SEWERML_CLASS_WEIGHTS["OK"] == 0.4396
    assert min(SEWERML_CLASS_WEIGHTS, key=SEWERML_CLASS_WEIGHTS.__getitem__) == "AF"
    with pytest.raises(TypeError):
        SEWERML_CLASS_WEIGHTS["RB"] = 2.0  # type: ignore[index]


def test_metrics_at_scale_equal_sklearn():
    """Many images and classes, several blocks on threads: AP, ROC-AUC, thresholds."""
    rng = np.random.default_rng(16)
    probs = rng.random((20000, 60)) ** 3
    labels = rng.random((20000, 60)) < 0.03
    split = RankedSplit(probs, labels)
    columns = [0, 17, 59]
    np.testing.assert_allclose(
        split.average_precision()[columns],
        sklearn_ap_per_class(probs[:, columns], labels[:, columns]),
        rtol=0,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        split.roc_auc()[columns],
        sklearn_roc_auc_per_class(probs[:, columns], labels[:, columns]),
        rtol=0,
        atol=1e-12,
    )
    np.testing.assert_array_equal(
        split.tuned_thresholds(2.0)[columns],
        tuned_thresholds(probs[:, columns], labels[:, columns], 2.0),
    )
