"""mlcbench.evaluation and ``mlcbench evaluate``: files in, checked, scored, summarised."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcbench.cli import main
from mlcbench.errors import SpecError
from mlcbench.evaluation import (
    STANDARD_POLICIES,
    ThresholdPolicy,
    evaluate_files,
    format_summary,
    load_class_weights,
    read_labelled_scores,
)
from mlcbench.metrics import (
    SEWERML_CLASS_WEIGHTS,
    evaluate,
    grid_thresholds,
    tuned_thresholds,
)

CLASSES = ["cat", "dog", "bird"]
REQUIRED_KEYS = {
    "map",
    "macro_f1",
    "macro_f2",
    "micro_f1",
    "micro_f2",
    "f1_neg",
    "f1_pos",
    "neg_false_alarm_rate",
    "roc_auc",
    "per_class",
    "threshold_policy",
    "positive_images",
    "classes_without_positives",
    "classes_without_negatives",
}


def make_split(seed: int, images: int, classes: list[str], prefix: str):
    rng = np.random.default_rng(seed)
    labels = (rng.random((images, len(classes))) < 0.25).astype(np.int64)
    labels[rng.random(images) < 0.4] = 0  # plenty of negative images
    probs = np.clip(0.35 * labels + 0.65 * rng.random((images, len(classes))), 0.0, 1.0)
    probs = np.round(probs, 3)  # ties, as a model writing few digits gives
    ids = [f"{prefix}_{index}" for index in range(images)]
    return ids, probs, labels


def write_csv(path: Path, ids, classes, values) -> Path:
    frame = pd.DataFrame(values, columns=list(classes))
    frame.insert(0, "image_id", list(ids))
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, object]:
    test_ids, test_probs, test_labels = make_split(0, 150, CLASSES, "test")
    val_ids, val_probs, val_labels = make_split(1, 200, CLASSES, "val")
    return {
        "scores": write_csv(tmp_path / "scores_test.csv", test_ids, CLASSES, test_probs),
        "labels": write_csv(tmp_path / "test.csv", test_ids, CLASSES, test_labels),
        "val_scores": write_csv(tmp_path / "scores_val.csv", val_ids, CLASSES, val_probs),
        "val_labels": write_csv(tmp_path / "val.csv", val_ids, CLASSES, val_labels),
        "test_arrays": (test_ids, test_probs, test_labels),
        "val_arrays": (val_ids, val_probs, val_labels),
        "dir": tmp_path,
    }


# --------------------------------------------------------------------------------------------
# Reading and aligning files
# --------------------------------------------------------------------------------------------


def test_rows_and_columns_in_another_order_are_matched_by_name(files):
    ids, probs, labels = files["test_arrays"]
    order = np.random.default_rng(2).permutation(len(ids))
    shuffled = write_csv(
        files["dir"] / "shuffled.csv",
        [ids[i] for i in order],
        ["bird", "cat", "dog"],
        probs[order][:, [2, 0, 1]],
    )
    aligned = read_labelled_scores(shuffled, files["labels"])
    assert aligned.image_ids == ids
    assert aligned.class_names == CLASSES
    np.testing.assert_array_equal(aligned.probs, probs)
    np.testing.assert_array_equal(aligned.labels, labels)


def test_a_file_result_equals_the_array_metrics(files):
    _, probs, labels = files["test_arrays"]
    result = evaluate_files(files["scores"], files["labels"])
    expected = evaluate(probs, labels, 0.5, CLASSES)
    assert result["map"] == pytest.approx(expected["map"], abs=1e-12)
    assert result["per_class"] == expected["per_class"]
    assert result["threshold_policy"]["name"] == "threshold_0.5"
    assert result["threshold_policy"]["thresholds"] == dict.fromkeys(CLASSES, 0.5)


def test_val_tuned_thresholds_come_from_the_val_files(files):
    _, val_probs, val_labels = files["val_arrays"]
    for beta in (1.0, 2.0):
        policy = ThresholdPolicy.val_tuned(beta)
        result = evaluate_files(
            files["scores"],
            files["labels"],
            val_scores_path=files["val_scores"],
            val_labels_path=files["val_labels"],
            policy=policy,
        )
        expected = tuned_thresholds(val_probs, val_labels, beta)
        record = result["threshold_policy"]
        assert record["name"] == f"val_tuned_f{beta:g}"
        assert record["search"] == "exact"
        assert list(record["thresholds"].values()) == expected.tolist()
        assert [result["per_class"][c]["threshold"] for c in CLASSES] == expected.tolist()
        _, test_probs, test_labels = files["test_arrays"]
        assert result["macro_f2"] == pytest.approx(
            evaluate(test_probs, test_labels, expected, CLASSES)["macro_f2"], abs=1e-12
        )


def test_val_files_with_their_classes_in_another_order(files):
    ids, probs, labels = files["val_arrays"]
    reordered = ["dog", "bird", "cat"]
    columns = [CLASSES.index(name) for name in reordered]
    val_scores = write_csv(files["dir"] / "v.csv", ids, reordered, probs[:, columns])
    val_labels = write_csv(files["dir"] / "vl.csv", ids, reordered, labels[:, columns])
    result = evaluate_files(
        files["scores"],
        files["labels"],
        val_scores_path=val_scores,
        val_labels_path=val_labels,
        policy=ThresholdPolicy.val_tuned(1.0, search="grid"),
    )
    expected = grid_thresholds(probs, labels, 1.0)
    assert result["threshold_policy"]["name"] == "val_grid_f1"
    assert list(result["threshold_policy"]["thresholds"].values()) == expected.tolist()


def test_standard_policies_are_the_metrics_json_policies():
    assert [policy.name for policy in STANDARD_POLICIES] == [
        "threshold_0.5",
        "val_tuned_f1",
        "val_tuned_f2",
        "val_grid_f1",
        "val_grid_f2",
    ]
    assert ThresholdPolicy.fixed_threshold(0.3).name == "threshold_0.3"


# --------------------------------------------------------------------------------------------
# Bad input: one line naming the file and the problem, exit 2
# --------------------------------------------------------------------------------------------

GOOD_LABELS = "image_id,cat,dog\nimg_1,1,0\nimg_2,0,0\nimg_3,0,1\n"
BAD_SCORES = {
    "missing ids": (
        "image_id,cat,dog\nimg_1,0.1,0.2\n",
        "scores.csv: 2 image ids of {labels} are missing (e.g. img_2, img_3)",
    ),
    "extra ids": (
        "image_id,cat,dog\nimg_1,0.1,0.2\nimg_2,0.1,0.2\nimg_3,0.1,0.2\nimg_17,0,0\nimg_18,0,0\n",
        "scores.csv: 2 image ids are not in {labels} (e.g. img_17, img_18)",
    ),
    "duplicated ids": (
        "image_id,cat,dog\nimg_1,0.1,0.2\nimg_2,0.1,0.2\nimg_3,0.1,0.2\nimg_1,0.1,0.2\n",
        "scores.csv: 1 image id appears more than once (e.g. img_1)",
    ),
    "missing class": (
        "image_id,cat\nimg_1,0.1\nimg_2,0.1\nimg_3,0.1\n",
        "scores.csv: 1 class column of {labels} is missing: dog",
    ),
    "extra class": (
        "image_id,cat,dog,cow\nimg_1,0.1,0.2,0\nimg_2,0.1,0.2,0\nimg_3,0.1,0.2,0\n",
        "scores.csv: 1 class column is not in {labels}: cow",
    ),
    "repeated column": (
        "image_id,cat,cat\nimg_1,0.1,0.2\n",
        "scores.csv: column names appear more than once: cat",
    ),
    "nan": (
        "image_id,cat,dog\nimg_1,0.1,nan\nimg_2,0.1,0.2\nimg_3,,0.2\n",
        "scores.csv: 2 scores are missing or NaN (e.g. image img_1, class dog)",
    ),
    "outside [0, 1]": (
        "image_id,cat,dog\nimg_1,0.1,0.2\nimg_2,-2.5,0.2\nimg_3,0.1,0.2\n",
        "scores.csv: 1 score is outside [0, 1] (e.g. -2.5 for image img_2, class cat); "
        "write probabilities, not logits",
    ),
    "not a number": (
        "image_id,cat,dog\nimg_1,0.1,0.2\nimg_2,high,0.2\nimg_3,0.1,0.2\n",
        "scores.csv: column 'cat' holds a value that is not a number ('high' for image img_2)",
    ),
    "empty file": (
        "",
        "scores.csv: empty file; expected a header 'image_id,<class>,...' and a row per image",
    ),
    "header only": ("image_id,cat,dog\n", "scores.csv: no images, only a header"),
    "no id column": (
        "name,cat,dog\nimg_1,0.1,0.2\n",
        "scores.csv: the first column must be 'image_id', got 'name'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SCORES))
def test_bad_score_files_are_one_line_and_exit_2(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("labels.csv").write_text(GOOD_LABELS, encoding="utf-8")
    text, message = BAD_SCORES[case]
    Path("scores.csv").write_text(text, encoding="utf-8")
    assert main(["evaluate", "scores.csv", "--labels", "labels.csv"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"mlcbench: error: {message.format(labels='labels.csv')}\n"


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            "image_id,cat,dog\nimg_1,1,0\nimg_2,2,0\nimg_3,0,1\n",
            "labels.csv: labels must be 0 or 1; 1 label is not (e.g. 2 for image img_2, class cat)",
        ),
        (
            "image_id,cat,dog\nimg_1,1,0\nimg_2,,0\nimg_3,0.5,1\n",
            "labels.csv: labels must be 0 or 1; 2 labels are not "
            "(e.g. an empty cell for image img_2, class cat)",
        ),
        (
            "image_id,cat,dog\nimg_1,1,0\nimg_1,0,0\nimg_3,0,1\n",
            "labels.csv: 1 image id appears more than once (e.g. img_1)",
        ),
    ],
)
def test_bad_label_files_are_named(labels, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("labels.csv").write_text(labels, encoding="utf-8")
    Path("scores.csv").write_text(
        "image_id,cat,dog\nimg_1,0.1,0.2\nimg_2,0.1,0.2\nimg_3,0.1,0.2\n", encoding="utf-8"
    )
    assert main(["evaluate", "scores.csv", "--labels", "labels.csv"]) == 2
    assert capsys.readouterr().err == f"mlcbench: error: {message}\n"


def test_a_missing_file_and_conflicting_options_exit_2(files, capsys):
    scores, labels = str(files["scores"]), str(files["labels"])
    val = ["--val-scores", str(files["val_scores"]), "--val-labels", str(files["val_labels"])]
    cases = [
        (["evaluate", "nope.csv", "--labels", labels], "nope.csv: no such file"),
        (["evaluate", scores, "--labels", labels, "--beta", "2"], "--beta and --search"),
        (["evaluate", scores, "--labels", labels, *val, "--threshold", "0.3"], "--threshold"),
        (["evaluate", scores, "--labels", labels, *val[:2]], "give both or neither"),
        (["evaluate", scores, "--labels", labels, "--threshold", "2"], "in [0, 1]"),
        (["evaluate", scores, "--labels", labels, *val, "--beta", "0"], "beta must be"),
    ]
    for argv, fragment in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("mlcbench: error: ") and fragment in err, (argv, err)
        assert err.count("\n") == 1


def test_val_labels_with_other_classes_are_rejected(files):
    ids, probs, labels = files["val_arrays"]
    other = ["cat", "dog", "fish"]
    val_scores = write_csv(files["dir"] / "v.csv", ids, other, probs)
    val_labels = write_csv(files["dir"] / "vl.csv", ids, other, labels)
    with pytest.raises(SpecError, match=r"vl\.csv: 1 class column of .*test\.csv is missing: bird"):
        evaluate_files(
            files["scores"],
            files["labels"],
            val_scores_path=val_scores,
            val_labels_path=val_labels,
        )


# --------------------------------------------------------------------------------------------
# Class weights
# --------------------------------------------------------------------------------------------


def test_sewerml_weights_give_ciw_f2(tmp_path):
    codes = list(SEWERML_CLASS_WEIGHTS)
    ids, probs, labels = make_split(3, 300, codes, "pipe")
    scores = write_csv(tmp_path / "s.csv", ids, codes, probs)
    label_file = write_csv(tmp_path / "l.csv", ids, codes, labels)
    result = evaluate_files(scores, label_file, class_weights="sewerml")
    f2 = np.array([result["per_class"][code]["f2"] for code in codes])
    weights = np.array([SEWERML_CLASS_WEIGHTS[code] for code in codes])
    present = labels.sum(axis=0) > 0
    assert result["ciw_f2"] == pytest.approx(
        (f2 * weights)[present].sum() / weights[present].sum(), abs=1e-12
    )
    assert result["class_weights"] == {"source": "sewerml", "weights": dict(SEWERML_CLASS_WEIGHTS)}
    assert "CIW-F2" in format_summary(result)


def test_weight_files_in_json_and_csv(tmp_path):
    (tmp_path / "w.json").write_text('{"cat": 1, "dog": 0.5, "bird": 0.25}', encoding="utf-8")
    (tmp_path / "w.csv").write_text("class,weight\ncat,1\ndog,0.5\nbird,0.25\n", encoding="utf-8")
    expected = {"cat": 1.0, "dog": 0.5, "bird": 0.25}
    assert load_class_weights(str(tmp_path / "w.json"), CLASSES) == expected
    assert load_class_weights(str(tmp_path / "w.csv"), CLASSES) == expected


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("w.csv", "class,weight\ncat,1\ndog,0.5\n", "no weight for 1 classes: bird"),
        ("w.csv", "class,weight\ncat,1\ndog,1\nbird,1\ncow,1\n", "not in the labels: cow"),
        ("w.csv", "name,value\ncat,1\n", "header 'class,weight'"),
        ("w.csv", "class,weight\ncat,heavy\ndog,1\nbird,1\n", "weight of cat must be a number"),
        ("w.json", '{"cat": 1, "dog": -1, "bird": 1}', "finite numbers >= 0"),
        ("w.json", '["cat"]', "JSON object"),
    ],
)
def test_bad_weight_files(tmp_path, name, text, message):
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(SpecError, match=message):
        load_class_weights(str(tmp_path / name), CLASSES)


def test_builtin_weights_must_fit_the_classes():
    with pytest.raises(SpecError, match="no weight for 3 classes"):
        load_class_weights("sewerml", CLASSES)
    with pytest.raises(SpecError, match="no such class-weights file"):
        load_class_weights("cityscapes", CLASSES)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def test_the_command_prints_a_summary_and_writes_json(files, capsys):
    out_json = files["dir"] / "out" / "result.json"
    argv = [
        "evaluate",
        str(files["scores"]),
        "--labels",
        str(files["labels"]),
        "--val-scores",
        str(files["val_scores"]),
        "--val-labels",
        str(files["val_labels"]),
        "--beta",
        "2",
        "--json",
        str(out_json),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "val_tuned_f2" in out
    for title in ("mAP", "ROC-AUC", "macro F2", "F1-neg", "neg. false-alarm rate", "bird"):
        assert title in out
    result = json.loads(out_json.read_text(encoding="utf-8"))
    assert set(result) >= REQUIRED_KEYS
    assert result["scores_file"] == str(files["scores"])
    assert result["val_labels_file"] == str(files["val_labels"])
    assert set(result["per_class"]) == set(CLASSES)
    assert set(result["threshold_policy"]["thresholds"]) == set(CLASSES)
    assert result["positive_images"]["images"] == result["images"] - result["negatives"]


def test_a_fixed_threshold_from_the_command(files, capsys):
    argv = ["evaluate", str(files["scores"]), "--labels", str(files["labels"])]
    assert main([*argv, "--threshold", "0.3"]) == 0
    assert "fixed 0.3 for every class [threshold_0.3]" in capsys.readouterr().out
