"""A resumed cell keeps the CSV log rows its checkpoint covers, and no half-written row."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from pytorch_lightning.loggers import CSVLogger

from mlcbench.training_log import keep_rows_through

# Lightning warns that it deletes the old log: exactly what keep_rows_through is there for.
pytestmark = pytest.mark.filterwarnings("ignore:.*exists and is not empty")

HEADER = "epoch,step,train/loss,val/map\n"
ROWS = ["0,9,2.3,\n", "0,9,,0.41\n", "1,19,2.1,\n", "1,19,,0.52\n", "2,29,1.9,\n"]


def saved_rows(logger: CSVLogger) -> list[dict[str, str]]:
    logger.save()
    with (Path(logger.log_dir) / "metrics.csv").open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_rows_through_the_checkpoint_epoch_come_back_before_the_new_ones(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path, name="logs", version="")
    Path(logger.log_dir).mkdir(parents=True)
    (Path(logger.log_dir) / "metrics.csv").write_text(HEADER + "".join(ROWS))
    assert keep_rows_through(logger, epoch=1) == 4
    logger.log_metrics({"epoch": 2, "train/loss": 1.8}, step=29)
    rows = saved_rows(logger)
    assert [(r["epoch"], r["val/map"]) for r in rows if r["val/map"]] == [
        ("0", "0.41"),
        ("1", "0.52"),
    ]
    assert [r["epoch"] for r in rows] == ["0", "0", "1", "1", "2"]
    assert float(rows[-1]["train/loss"]) == 1.8  # epoch 2 again, from the resumed run


def test_a_row_cut_short_by_a_kill_is_dropped(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path, name="logs", version="")
    Path(logger.log_dir).mkdir(parents=True)
    (Path(logger.log_dir) / "metrics.csv").write_text(HEADER + "".join(ROWS[:3]) + "1,19,,0.5")
    assert keep_rows_through(logger, epoch=1) == 3
    assert "0.5" not in [r["val/map"] for r in saved_rows(logger)]


def test_a_cell_without_a_log_keeps_nothing(tmp_path: Path) -> None:
    assert keep_rows_through(CSVLogger(tmp_path, name="logs", version=""), epoch=3) == 0
