"""Score files against label files under a threshold policy (DESIGN.md sections 6 and 7).

This is the file-level layer over :mod:`mlcbench.metrics`: it reads and checks score and label
CSVs (``image_id`` first, then one column per class name), chooses thresholds by a
:class:`ThresholdPolicy`, records the policy and the thresholds beside the metrics, and prints
a summary. ``mlcbench evaluate`` and each cell's ``metrics.json`` go through it, so a score
file made by a model trained anywhere is scored exactly as the benchmark's own are.

Class-weight files (``--class-weights FILE``) map each class name to its CIW-F2 weight, as
a JSON object (``{"RB": 1.0, "OB": 0.5518, ...}``) when the name ends in ``.json``, else as a
CSV with the header ``class,weight`` and one row per class. They name every class of the
labels and no other; weights are finite, >= 0 and not all 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlcbench.errors import SpecError
from mlcbench.metrics import SEWERML_CLASS_WEIGHTS, RankedSplit

SCHEMA_VERSION = 1
ID_COLUMN = "image_id"
DEFAULT_THRESHOLD = 0.5
#: ``--class-weights`` names that mean a built-in table rather than a file.
BUILTIN_CLASS_WEIGHTS: Mapping[str, Mapping[str, float]] = {"sewerml": SEWERML_CLASS_WEIGHTS}
_MISSING_VALUES = ["", "nan", "NaN", "NAN", "-nan", "NA", "N/A", "n/a", "null", "NULL", "None"]
# How many offending ids or values an error message shows.
_EXAMPLES = 3


# --------------------------------------------------------------------------------------------
# Threshold policies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdPolicy:
    """How the thresholds of a result are chosen: fixed, or per class on the val split."""

    #: Key of the result in ``metrics.json``: ``threshold_0.5``, ``val_tuned_f2``, ``val_grid_f1``.
    name: str
    #: The one threshold of every class, for a fixed policy; None for a val search.
    fixed: float | None = None
    #: The F-beta a val search maximises per class; None for a fixed policy.
    beta: float | None = None
    #: ``exact`` (every distinct val score) or ``grid`` (0.05, 0.10, ..., 0.95).
    search: str = "exact"

    @classmethod
    def fixed_threshold(cls, threshold: float = DEFAULT_THRESHOLD) -> ThresholdPolicy:
        value = float(threshold)
        if not math.isfinite(value):
            raise SpecError(f"threshold must be a finite number; got {threshold!r}")
        return cls(name=f"threshold_{value:g}", fixed=value)

    @classmethod
    def val_tuned(cls, beta: float, search: str = "exact") -> ThresholdPolicy:
        value = float(beta)
        if not (math.isfinite(value) and value > 0):
            raise SpecError(f"beta must be a number > 0; got {beta!r}")
        if search not in ("exact", "grid"):
            raise SpecError(f"search must be 'exact' or 'grid'; got {search!r}")
        kind = "tuned" if search == "exact" else "grid"
        return cls(name=f"val_{kind}_f{value:g}", beta=value, search=search)

    @property
    def needs_val(self) -> bool:
        return self.beta is not None

    def describe(self) -> str:
        if self.beta is None:
            return f"fixed {self.fixed:g} for every class"
        search = (
            "exact search over every distinct val score"
            if self.search == "exact"
            else "grid search over 0.05, 0.10, ..., 0.95"
        )
        return f"per class, maximising F{self.beta:g} on the val split ({search})"

    def thresholds(self, val: RankedSplit | None, classes: int) -> npt.NDArray[np.float64]:
        """One threshold per class; a val search needs ``val``."""
        if self.beta is None:
            assert self.fixed is not None
            return np.full(classes, self.fixed)
        if val is None:
            raise SpecError(f"threshold policy {self.name} needs val scores and labels")
        if self.search == "grid":
            return val.grid_thresholds(self.beta)
        return val.tuned_thresholds(self.beta)

    def record(self, class_names: Sequence[str], thresholds: Sequence[float]) -> dict[str, Any]:
        """The JSON record of this policy and the thresholds it chose."""
        return {
            "name": self.name,
            "description": self.describe(),
            "kind": "fixed" if self.beta is None else "val_tuned",
            "threshold": self.fixed,
            "beta": self.beta,
            "search": None if self.beta is None else self.search,
            "thresholds": {
                name: float(value) for name, value in zip(class_names, thresholds, strict=True)
            },
        }


#: The policies every cell's ``metrics.json`` holds, by name.
STANDARD_POLICIES: tuple[ThresholdPolicy, ...] = (
    ThresholdPolicy.fixed_threshold(DEFAULT_THRESHOLD),
    ThresholdPolicy.val_tuned(1.0),
    ThresholdPolicy.val_tuned(2.0),
    ThresholdPolicy.val_tuned(1.0, search="grid"),
    ThresholdPolicy.val_tuned(2.0, search="grid"),
)


def evaluate_policies(
    splits: Mapping[str, RankedSplit],
    class_names: Sequence[str],
    policies: Iterable[ThresholdPolicy],
    *,
    val: RankedSplit | None = None,
    class_weights: Mapping[str, float] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every split under every policy: ``{split: {policy name: result}}``.

    Each policy chooses its thresholds once (on ``val`` for a val search) and applies them
    unchanged to every split. A result is :meth:`RankedSplit.evaluate`'s dict plus
    ``threshold_policy`` (see :meth:`ThresholdPolicy.record`), placed before ``per_class``.
    Pass the same :class:`RankedSplit` as ``val`` and in ``splits`` to rank it only once.
    """
    names = list(class_names)
    results: dict[str, dict[str, dict[str, Any]]] = {split: {} for split in splits}
    for policy in policies:
        thresholds = policy.thresholds(val, len(names))
        record = policy.record(names, thresholds.tolist())
        for split_name, split in splits.items():
            result = split.evaluate(thresholds, names, class_weights=class_weights)
            per_class = result.pop("per_class")
            result["threshold_policy"] = record
            result["per_class"] = per_class
            results[split_name][policy.name] = result
    return results


# --------------------------------------------------------------------------------------------
# Score and label files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledScores:
    """A score file aligned with its label file: same images, same classes, same order."""

    image_ids: list[str]
    class_names: list[str]
    probs: npt.NDArray[np.float64]
    labels: npt.NDArray[np.float64]

    def ranked(self) -> RankedSplit:
        return RankedSplit(self.probs, self.labels)


def read_labelled_scores(scores_path: Path, labels_path: Path) -> LabelledScores:
    """Read a score CSV and its label CSV, check both, and align the scores to the labels.

    Rows are matched by ``image_id`` and class columns by name, so either may come in another
    order; the result follows the label file's order. Raises :class:`SpecError` (one line
    naming the file) for a missing or empty file, a bad header, duplicated, missing or extra
    image ids, missing or extra class columns, scores that are NaN or outside [0, 1], and
    labels other than 0/1.
    """
    score_table = _read_table(scores_path)
    label_table = _read_table(labels_path)
    _check_scores(scores_path, score_table)
    _check_labels(labels_path, label_table)
    _check_same_classes(scores_path, score_table.class_names, labels_path, label_table.class_names)
    _check_same_images(scores_path, score_table.image_ids, labels_path, label_table.image_ids)

    column_of = {name: index for index, name in enumerate(score_table.class_names)}
    row_of = {image_id: index for index, image_id in enumerate(score_table.image_ids)}
    rows = np.array([row_of[image_id] for image_id in label_table.image_ids], dtype=np.intp)
    columns = np.array([column_of[name] for name in label_table.class_names], dtype=np.intp)
    probs = score_table.values
    if not (_is_identity(rows) and _is_identity(columns)):
        probs = probs[np.ix_(rows, columns)]
    return LabelledScores(
        image_ids=label_table.image_ids,
        class_names=label_table.class_names,
        probs=np.ascontiguousarray(probs),
        labels=label_table.values,
    )


@dataclass(frozen=True)
class _Table:
    image_ids: list[str]
    class_names: list[str]
    values: npt.NDArray[np.float64]


def _read_table(path: Path) -> _Table:
    """Read a CSV in the standard layout, checking its shape but not its values."""
    import pandas as pd

    if not path.is_file():
        raise SpecError(f"{path}: no such file")
    header = _read_header(path)
    if header[0] != ID_COLUMN:
        raise SpecError(f"{path}: the first column must be {ID_COLUMN!r}, got {header[0]!r}")
    class_names = header[1:]
    if not class_names:
        raise SpecError(f"{path}: no class columns after {ID_COLUMN!r}")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise SpecError(f"{path}: column names appear more than once: {', '.join(repeated)}")
    try:
        frame = pd.read_csv(
            path,
            dtype={ID_COLUMN: str},
            # Image ids are kept as written ("NA" can be an id); in class columns the usual
            # spellings of a missing value become NaN, reported as such below.
            keep_default_na=False,
            na_values={ID_COLUMN: [""], **dict.fromkeys(class_names, _MISSING_VALUES)},
            encoding="utf-8-sig",
        )
    except (ValueError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise SpecError(f"{path}: not a readable CSV table ({reason})") from None
    if len(frame) == 0:
        raise SpecError(f"{path}: no images, only a header")
    ids = frame[ID_COLUMN]
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0]) + 2
        raise SpecError(f"{path}: line {row} has an empty {ID_COLUMN}")
    image_ids = ids.tolist()
    duplicated = ids[ids.duplicated()].unique().tolist()
    if duplicated:
        raise SpecError(
            f"{path}: {_several(len(duplicated), 'image id', 'appears')} more than once"
            f"{_examples(duplicated)}"
        )
    for name in class_names:
        column = frame[name]
        if not pd.api.types.is_numeric_dtype(column):
            numbers = pd.to_numeric(column, errors="coerce")
            bad = int(np.flatnonzero((numbers.isna() & column.notna()).to_numpy())[0])
            raise SpecError(
                f"{path}: column {name!r} holds a value that is not a number "
                f"({column.iloc[bad]!r} for image {image_ids[bad]})"
            )
    values = frame[class_names].to_numpy(dtype=np.float64)
    return _Table(image_ids=image_ids, class_names=class_names, values=values)


def _read_header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        try:
            header = next(csv.reader(stream), [])
        except (csv.Error, UnicodeDecodeError) as error:
            raise SpecError(f"{path}: not a readable CSV file ({error})") from None
    if not any(cell.strip() for cell in header):
        raise SpecError(
            f"{path}: empty file; expected a header '{ID_COLUMN},<class>,...' and a row per image"
        )
    return header


def _check_scores(path: Path, table: _Table) -> None:
    values = table.values
    missing = np.isnan(values)
    if missing.any():
        example = _first_cell(table, missing)
        raise SpecError(
            f"{path}: {_several(int(missing.sum()), 'score')} missing or NaN (e.g. {example})"
        )
    outside = (values < 0.0) | (values > 1.0)
    if outside.any():
        row, column = np.argwhere(outside)[0]
        raise SpecError(
            f"{path}: {_several(int(outside.sum()), 'score')} outside [0, 1] "
            f"(e.g. {values[row, column]:g} "
            f"for {_cell(table, row, column)}); write probabilities, not logits"
        )


def _check_labels(path: Path, table: _Table) -> None:
    values = table.values
    not_binary = ~((values == 0.0) | (values == 1.0))
    if not_binary.any():
        row, column = np.argwhere(not_binary)[0]
        found = "an empty cell" if np.isnan(values[row, column]) else f"{values[row, column]:g}"
        raise SpecError(
            f"{path}: labels must be 0 or 1; {_several(int(not_binary.sum()), 'label')} not "
            f"(e.g. {found} for {_cell(table, row, column)})"
        )


def _check_same_classes(
    path: Path, class_names: list[str], reference_path: Path, reference: list[str]
) -> None:
    present = set(class_names)
    missing = [name for name in reference if name not in present]
    if missing:
        raise SpecError(
            f"{path}: {_several(len(missing), 'class column', '')} of {reference_path} "
            f"{_verb(len(missing))} missing: "
            f"{', '.join(missing)}"
        )
    known = set(reference)
    extra = [name for name in class_names if name not in known]
    if extra:
        raise SpecError(
            f"{path}: {_several(len(extra), 'class column')} not in {reference_path}: "
            f"{', '.join(extra)}"
        )


def _check_same_images(
    path: Path, image_ids: list[str], reference_path: Path, reference: list[str]
) -> None:
    known = set(reference)
    extra = [image_id for image_id in image_ids if image_id not in known]
    if extra:
        raise SpecError(
            f"{path}: {_several(len(extra), 'image id')} not in {reference_path}{_examples(extra)}"
        )
    present = set(image_ids)
    missing = [image_id for image_id in reference if image_id not in present]
    if missing:
        raise SpecError(
            f"{path}: {_several(len(missing), 'image id', '')} of {reference_path} "
            f"{_verb(len(missing))} missing"
            f"{_examples(missing)}"
        )


def _first_cell(table: _Table, mask: npt.NDArray[np.bool_]) -> str:
    row, column = np.argwhere(mask)[0]
    return _cell(table, row, column)


def _cell(table: _Table, row: int, column: int) -> str:
    return f"image {table.image_ids[row]}, class {table.class_names[column]}"


def _several(count: int, noun: str, verb: str = "is") -> str:
    """'1 score is' or '3 scores are'; with verb "" just '3 scores'."""
    plural = {"is": "are", "appears": "appear", "": ""}[verb]
    words = f"1 {noun} {verb}" if count == 1 else f"{count} {noun}s {plural}"
    return words.rstrip()


def _verb(count: int) -> str:
    return "is" if count == 1 else "are"


def _examples(items: Sequence[str]) -> str:
    return f" (e.g. {', '.join(str(item) for item in items[:_EXAMPLES])})"


def _is_identity(indices: npt.NDArray[np.intp]) -> bool:
    return bool(np.array_equal(indices, np.arange(len(indices))))


# --------------------------------------------------------------------------------------------
# Class weights
# --------------------------------------------------------------------------------------------


def load_class_weights(source: str, class_names: Sequence[str]) -> dict[str, float]:
    """CIW-F2 weights from a built-in name (``sewerml``) or a JSON / CSV file (see above).

    The weights must name exactly ``class_names``; otherwise a :class:`SpecError` says which
    classes are missing or unknown.
    """
    builtin = BUILTIN_CLASS_WEIGHTS.get(source.lower())
    if builtin is not None:
        weights, origin = dict(builtin), f"class weights {source!r}"
    else:
        path = Path(source)
        if not path.is_file():
            known = ", ".join(sorted(BUILTIN_CLASS_WEIGHTS))
            raise SpecError(f"{path}: no such class-weights file (built-in weights: {known})")
        weights = (
            _read_weights_json(path) if path.suffix.lower() == ".json" else _read_weights_csv(path)
        )
        origin = str(path)
    missing = [name for name in class_names if name not in weights]
    if missing:
        raise SpecError(f"{origin}: no weight for {len(missing)} classes: {', '.join(missing)}")
    unknown = sorted(set(weights) - set(class_names))
    if unknown:
        raise SpecError(f"{origin}: weights for classes not in the labels: {', '.join(unknown)}")
    values = [weights[name] for name in class_names]
    if not all(math.isfinite(value) and value >= 0 for value in values) or sum(values) == 0:
        raise SpecError(f"{origin}: weights must be finite numbers >= 0, not all 0")
    return {name: weights[name] for name in class_names}


def _read_weights_json(path: Path) -> dict[str, float]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SpecError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(value, dict):
        raise SpecError(f"{path}: expected a JSON object mapping class name to weight")
    return {str(name): _weight(path, name, weight) for name, weight in value.items()}


def _read_weights_csv(path: Path) -> dict[str, float]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        rows = [row for row in csv.reader(stream) if any(cell.strip() for cell in row)]
    if not rows or [cell.strip() for cell in rows[0]] != ["class", "weight"]:
        raise SpecError(f"{path}: expected a CSV with the header 'class,weight'")
    weights: dict[str, float] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise SpecError(f"{path}: line {line}: expected 'class,weight', got {row!r}")
        name = row[0].strip()
        if name in weights:
            raise SpecError(f"{path}: class {name!r} appears more than once")
        weights[name] = _weight(path, name, row[1].strip())
    return weights


def _weight(path: Path, name: object, value: object) -> float:
    if isinstance(value, bool):
        raise SpecError(f"{path}: the weight of {name} must be a number, got {value!r}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SpecError(f"{path}: the weight of {name} must be a number, got {value!r}") from None


# --------------------------------------------------------------------------------------------
# Scoring files, and the summary table
# --------------------------------------------------------------------------------------------


def evaluate_files(
    scores_path: Path,
    labels_path: Path,
    *,
    val_scores_path: Path | None = None,
    val_labels_path: Path | None = None,
    policy: ThresholdPolicy | None = None,
    class_weights: str | None = None,
) -> dict[str, Any]:
    """Score one score CSV against its labels under one threshold policy.

    ``policy`` defaults to the fixed 0.5, or F1-tuned thresholds when val files are given;
    a val search needs both val files. ``class_weights`` is a built-in name or a file (see
    the module docstring) and adds ``ciw_f2``. Returns the JSON of ``mlcbench evaluate``:
    ``schema_version``, the files, then every key of :meth:`RankedSplit.evaluate` at the top
    level, with ``threshold_policy`` and ``per_class`` beneath.
    """
    if (val_scores_path is None) != (val_labels_path is None):
        raise SpecError("val scores and val labels go together: give both or neither")
    has_val = val_scores_path is not None
    if policy is None:
        policy = ThresholdPolicy.val_tuned(1.0) if has_val else ThresholdPolicy.fixed_threshold()
    if policy.needs_val and not has_val:
        raise SpecError(f"threshold policy {policy.name} needs val scores and val labels")
    if has_val and not policy.needs_val:
        raise SpecError("val files are only used to tune thresholds; drop them or the threshold")

    test = read_labelled_scores(scores_path, labels_path)
    val_split: RankedSplit | None = None
    if val_scores_path is not None and val_labels_path is not None:
        val = read_labelled_scores(val_scores_path, val_labels_path)
        _check_same_classes(val_labels_path, val.class_names, labels_path, test.class_names)
        order = [val.class_names.index(name) for name in test.class_names]
        val_split = RankedSplit(val.probs[:, order], val.labels[:, order])
    weights = None if class_weights is None else load_class_weights(class_weights, test.class_names)

    result = evaluate_policies(
        {"test": test.ranked()},
        test.class_names,
        [policy],
        val=val_split,
        class_weights=weights,
    )["test"][policy.name]
    files: dict[str, Any] = {"scores_file": str(scores_path), "labels_file": str(labels_path)}
    if has_val:
        files["val_scores_file"] = str(val_scores_path)
        files["val_labels_file"] = str(val_labels_path)
    if weights is not None:
        files["class_weights"] = {"source": class_weights, "weights": weights}
    return {"schema_version": SCHEMA_VERSION, **files, **result}


def format_summary(result: Mapping[str, Any]) -> str:
    """A readable summary of an :func:`evaluate_files` (or a policy) result, in percent."""
    from tabulate import tabulate

    positive = result.get("positive_images", {})
    rows = [
        ["mAP", "map"],
        ["ROC-AUC", "roc_auc"],
        ["macro F1", "macro_f1"],
        ["macro F2", "macro_f2"],
        ["macro precision", "macro_precision"],
        ["macro recall", "macro_recall"],
        ["micro F1", "micro_f1"],
        ["micro F2", "micro_f2"],
        ["micro precision", "micro_precision"],
        ["micro recall", "micro_recall"],
    ]
    if "ciw_f2" in result:
        rows.append(["CIW-F2", "ciw_f2"])
    rows += [
        ["F1-neg", "f1_neg"],
        ["F1-pos", "f1_pos"],
        ["neg. false-alarm rate", "neg_false_alarm_rate"],
    ]
    table = [[title, _percent(result.get(key)), _percent(positive.get(key))] for title, key in rows]
    lines = []
    if "scores_file" in result:
        lines.append(f"scores {result['scores_file']} against labels {result['labels_file']}")
    lines.append(
        f"{result['images']} images, {result['negatives']} negative (no label); "
        f"{positive.get('images', result['images'] - result['negatives'])} positive"
    )
    policy = result.get("threshold_policy")
    if policy:
        lines.append(f"thresholds: {policy['description']} [{policy['name']}]")
    lines += [
        "",
        tabulate(
            table,
            headers=["metric (%)", "all images", "positive images"],
            disable_numparse=True,
            colalign=("left", "right", "right"),
        ),
    ]

    per_class = [
        [
            name,
            str(row["support"]),
            f"{row['threshold']:.6g}",
            _percent(row["ap"]),
            _percent(row["roc_auc"]),
            _percent(row["precision"]),
            _percent(row["recall"]),
            _percent(row["f1"]),
            _percent(row["f2"]),
        ]
        for name, row in result["per_class"].items()
    ]
    headers = ["class", "positives", "threshold", "AP", "ROC-AUC", "P", "R", "F1", "F2"]
    align = ("left", *["right"] * (len(headers) - 1))
    lines += ["", tabulate(per_class, headers=headers, disable_numparse=True, colalign=align)]
    for key, meaning in (
        ("classes_without_positives", "no positive: left out of mAP, macro averages, ROC-AUC"),
        ("classes_without_negatives", "no negative: left out of ROC-AUC"),
    ):
        if result.get(key):
            lines.append(f"{meaning}: {', '.join(result[key])}")
    return "\n".join(lines)


def _percent(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def command_evaluate(args: argparse.Namespace) -> int:
    """``mlcbench evaluate``: print the summary and write the JSON when asked."""
    from mlcbench.files import write_json

    has_val = args.val_scores is not None or args.val_labels is not None
    if has_val and args.threshold is not None:
        raise SpecError("--threshold is a fixed policy; it does not go with --val-scores")
    if not has_val and (args.beta is not None or args.search is not None):
        raise SpecError(
            "--beta and --search tune thresholds on val: add --val-scores and --val-labels"
        )
    if has_val:
        beta = 1.0 if args.beta is None else args.beta
        policy = ThresholdPolicy.val_tuned(beta, args.search or "exact")
    else:
        threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
        if not 0.0 <= threshold <= 1.0:
            raise SpecError(f"--threshold must be in [0, 1]; got {threshold:g}")
        policy = ThresholdPolicy.fixed_threshold(threshold)
    result = evaluate_files(
        args.scores,
        args.labels,
        val_scores_path=args.val_scores,
        val_labels_path=args.val_labels,
        policy=policy,
        class_weights=args.class_weights,
    )
    print(format_summary(result))
    if args.json is not None:
        write_json(args.json, result)
        print(f"\nWrote {args.json}")
    return 0
