"""Where a cell's results live, and how its metrics are computed from its score files.

Metrics are always computed by reading back the score CSVs just written, so every number
in ``metrics.json`` (and so in a leaderboard) is exactly what those files give.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcbench.data import MultiLabelDataset
from mlcbench.errors import MlcbenchError
from mlcbench.files import write_json
from mlcbench.grid import Cell
from mlcbench.metrics import evaluate, tuned_thresholds
from mlcbench.scores import read_table

SCHEMA_VERSION = 1
FIXED_THRESHOLD = 0.5
#: Threshold policies evaluated for every cell: name → Fβ the val search maximises (or None).
POLICIES: dict[str, float | None] = {
    "threshold_0.5": None,
    "val_tuned_f1": 1.0,
    "val_tuned_f2": 2.0,
}


@dataclass(frozen=True)
class CellPaths:
    out_dir: Path
    cell_id: str

    @property
    def root(self) -> Path:
        return self.out_dir / "cells" / self.cell_id

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def failure(self) -> Path:
        return self.root / "failure.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def last_checkpoint(self) -> Path:
        return self.root / "checkpoints" / "last.ckpt"

    def scores(self, split: str) -> Path:
        return self.root / f"scores_{split}.csv"


def labels_path(out_dir: Path, dataset_key: str, split: str) -> Path:
    return out_dir / "labels" / dataset_key / f"{split}.csv"


def is_complete(paths: CellPaths) -> bool:
    """A cell is complete once its metrics file parses and names it, and its score files are
    there (metrics are written last, so a file damaged by an older crash means a re-run)."""
    try:
        metrics = json.loads(paths.metrics.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(metrics, dict)
        and metrics.get("cell_id") == paths.cell_id
        and all(paths.scores(split).is_file() for split in ("val", "test"))
    )


def read_failure(paths: CellPaths) -> str:
    """The reason a cell failed in an earlier run, or '' when it did not."""
    try:
        failure = json.loads(paths.failure.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(failure.get("reason", "unknown reason")) if isinstance(failure, dict) else ""


def _read_split(paths: CellPaths, cell: Cell, split: str) -> tuple[Any, Any]:
    score_ids, score_classes, probabilities = read_table(paths.scores(split))
    label_ids, label_classes, labels = read_table(
        labels_path(paths.out_dir, cell.dataset.key, split)
    )
    if score_ids != label_ids or score_classes != label_classes:
        raise MlcbenchError(f"{paths.scores(split)}: image ids or classes differ from the labels")
    return probabilities, labels


def evaluate_cell(
    cell: Cell, dataset: MultiLabelDataset, paths: CellPaths, training: dict[str, Any]
) -> dict[str, Any]:
    """Score val and test under every threshold policy and write ``metrics.json``."""
    class_names = list(dataset.class_names)
    weights = dict(dataset.class_weights) if dataset.class_weights else None
    val_probabilities, val_labels = _read_split(paths, cell, "val")
    test_probabilities, test_labels = _read_split(paths, cell, "test")
    results: dict[str, Any] = {"val": {}, "test": {}}
    for policy, beta in POLICIES.items():
        thresholds: Any = (
            FIXED_THRESHOLD
            if beta is None
            else tuned_thresholds(val_probabilities, val_labels, beta)
        )
        for split, probabilities, labels in (
            ("val", val_probabilities, val_labels),
            ("test", test_probabilities, test_labels),
        ):
            block = evaluate(probabilities, labels, thresholds, class_names, class_weights=weights)
            block["threshold_policy"] = (
                f"fixed {FIXED_THRESHOLD}"
                if beta is None
                else f"per class, maximising F{beta:g} on the val split"
            )
            results[split][policy] = block
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "cell_id": cell.id,
        "cell": {
            "dataset": cell.dataset.spec.display_name,
            "dataset_key": cell.dataset.key,
            "backbone": cell.backbone.spec.display_name,
            "loss": cell.loss.display_name,
            "seed": cell.seed,
        },
        "training": training,
        "config": dict(cell.config),
        **results,
    }
    write_json(paths.metrics, metrics)
    return metrics
