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
from mlcbench.evaluation import STANDARD_POLICIES, ThresholdPolicy, evaluate_policies
from mlcbench.files import write_json
from mlcbench.grid import Cell
from mlcbench.metrics import RankedSplit
from mlcbench.scores import read_table

SCHEMA_VERSION = 1
FIXED_THRESHOLD = 0.5
#: Threshold policies evaluated for every cell, by name: ``threshold_0.5``, ``val_tuned_f1``,
#: ``val_tuned_f2`` (exact search) and ``val_grid_f1``, ``val_grid_f2`` (0.05 … 0.95 grid).
POLICIES: dict[str, ThresholdPolicy] = {policy.name: policy for policy in STANDARD_POLICIES}


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
    """Score val and test under every threshold policy and write ``metrics.json``.

    Each policy's result records the policy and the thresholds it chose
    (``threshold_policy``, see :meth:`mlcbench.evaluation.ThresholdPolicy.record`).
    """
    class_names = list(dataset.class_names)
    weights = dict(dataset.class_weights) if dataset.class_weights else None
    # Each split is ranked once; every policy's thresholds come from val.
    val = RankedSplit(*_read_split(paths, cell, "val"))
    test = RankedSplit(*_read_split(paths, cell, "test"))
    results = evaluate_policies(
        {"val": val, "test": test},
        class_names,
        POLICIES.values(),
        val=val,
        class_weights=weights,
    )
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
