"""One real end-to-end run of a tiny grid on the CPU, and every file it writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dataset_fixtures import TINY_SMALLCNN, tiny_negdigits

from mlcbench.cli import main
from mlcbench.files import sha256_file
from mlcbench.grid import expand
from mlcbench.plugin_manager import default_plugins
from mlcbench.runner import RunOptions, run_benchmark
from mlcbench.spec import parse_spec

TINY = {
    "name": "tiny",
    "datasets": [tiny_negdigits(192, 96)],
    "backbones": [TINY_SMALLCNN],
    "losses": ["bce", "focal+any_class"],
    "seeds": [0, 1],
    "train": {"epochs": 2, "batch_size": 32, "warmup_epochs": 0.5},
    "reference": {
        "source": "a made-up table",
        "rows": [{"dataset": "negdigits", "backbone": "Paper-Net", "loss": "bce", "map": 12.34}],
    },
}
METRIC_KEYS = {"map", "macro_f1", "macro_f2", "f1_neg", "f1_pos", "neg_false_alarm_rate"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("run")
    spec_path = root / "tiny.yaml"
    import yaml

    spec_path.write_text(yaml.safe_dump(TINY))
    out = root / "out"
    assert main(["run", str(spec_path), "--out", str(out), "--no-progress"]) == 0
    return spec_path, out


def test_every_cell_writes_config_scores_sidecars_and_metrics(tiny_run):
    _, out = tiny_run
    cells = expand(parse_spec(TINY), default_plugins())
    assert len(cells) == 4
    for cell in cells:
        root = out / "cells" / cell.id
        assert json.loads((root / "config.json").read_text()) == json.loads(json.dumps(cell.config))
        for split in ("val", "test"):
            scores = pd.read_csv(root / f"scores_{split}.csv")
            labels_file = out / "labels" / cell.dataset.key / f"{split}.csv"
            labels = pd.read_csv(labels_file)
            assert list(scores.columns) == ["image_id", *[f"digit_{d}" for d in range(5)]]
            assert list(scores.columns) == list(labels.columns)
            assert scores["image_id"].tolist() == labels["image_id"].tolist()
            values = scores.iloc[:, 1:].to_numpy()
            assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
            assert set(np.unique(labels.iloc[:, 1:].to_numpy())) <= {0, 1}
            sidecar = json.loads((root / f"scores_{split}.json").read_text())
            assert sidecar["labels_sha256"] == sha256_file(labels_file)
            assert sidecar["class_names"] == list(scores.columns[1:])
            assert sidecar["config"]["seed"] == cell.seed
        metrics = json.loads((root / "metrics.json").read_text())
        assert metrics["cell_id"] == cell.id
        for policy in ("threshold_0.5", "val_tuned_f1", "val_tuned_f2"):
            assert set(metrics["test"][policy]) >= METRIC_KEYS
        assert metrics["training"]["accelerator"] == "cpu"
        assert not list(root.rglob("*.tmp"))


def test_metrics_are_recomputable_from_the_score_files(tiny_run):
    from sklearn.metrics import average_precision_score

    _, out = tiny_run
    for metrics_path in (out / "cells").glob("*/metrics.json"):
        metrics = json.loads(metrics_path.read_text())
        scores = pd.read_csv(metrics_path.parent / "scores_test.csv").iloc[:, 1:].to_numpy()
        labels_file = out / "labels" / metrics["cell"]["dataset_key"] / "test.csv"
        labels = pd.read_csv(labels_file).iloc[:, 1:].to_numpy()
        present = labels.sum(axis=0) > 0
        expected = average_precision_score(labels[:, present], scores[:, present], average=None)
        assert metrics["test"]["threshold_0.5"]["map"] == pytest.approx(expected.mean(), abs=1e-9)


def test_leaderboard_lists_every_backbone_loss_row_with_seed_counts(tiny_run):
    _, out = tiny_run
    board = (out / "leaderboards" / "tiny.md").read_text()
    assert "## negdigits" in board
    for loss in ("bce", "focal+any_class"):
        rows = [line for line in board.splitlines() if f"| {loss} " in line and "smallcnn" in line]
        assert len(rows) == 2, board  # one row per threshold table
        assert all(re.search(r"\|\s*2\s*\|$", line) for line in rows), rows
    assert "Negative share" in board and "Val-tuned thresholds" in board
    assert "| Paper-Net " in board and "12.34" in board  # the spec's published numbers
    table = pd.read_csv(out / "leaderboards" / "tiny.csv")
    assert set(table["loss"]) == {"bce", "focal+any_class"}
    assert (table["seeds"] == 2).all()


def test_leaderboard_numbers_are_the_seed_means_of_metrics_json(tiny_run):
    _, out = tiny_run
    table = pd.read_csv(out / "leaderboards" / "tiny.csv")
    runs = [json.loads(p.read_text()) for p in (out / "cells").glob("*/metrics.json")]
    for loss in ("bce", "focal+any_class"):
        values = [r["test"]["threshold_0.5"]["map"] for r in runs if r["cell"]["loss"] == loss]
        row = table[(table["loss"] == loss) & (table["policy"] == "threshold_0.5")]
        assert row[row["metric"] == "map"]["mean"].item() == pytest.approx(np.mean(values))
        assert row[row["metric"] == "map"]["std"].item() == pytest.approx(np.std(values, ddof=1))


def test_rerun_skips_complete_cells_and_rebuilds_the_same_leaderboard(tiny_run, capsys):
    spec_path, out = tiny_run
    before = (out / "leaderboards" / "tiny.md").read_bytes()
    assert main(["run", str(spec_path), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("complete, skipped") == 4
    assert "0 trained" in printed
    assert (out / "leaderboards" / "tiny.md").read_bytes() == before


def test_leaderboard_command_rebuilds_from_disk(tiny_run, tmp_path):
    _, out = tiny_run
    assert main(["leaderboard", str(out), "--name", "tiny", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "tiny.md").read_bytes() == (out / "leaderboards" / "tiny.md").read_bytes()


def test_a_cpu_run_is_repeatable(tiny_run, tmp_path):
    _, out = tiny_run
    spec = parse_spec({**TINY, "losses": ["focal+any_class"], "seeds": [1]})
    run_benchmark(
        spec,
        default_plugins(),
        out_dir=tmp_path,
        leaderboard_dir=tmp_path / "boards",
        options=RunOptions(progress=False),
        echo=lambda _: None,
    )
    (cell,) = expand(spec, default_plugins())
    again = (tmp_path / "cells" / cell.id / "scores_test.csv").read_text()
    first = (out / "cells" / cell.id / "scores_test.csv").read_text()
    assert again == first
