"""A resumed cell keeps its training log.

Lightning's CSV logger writes ``logs/metrics.csv`` only now and then, and deletes it when a
new trainer starts in the same folder. So a cell flushes the log whenever it checkpoints,
and a cell that resumes from the checkpoint of epoch e first reads back the rows of epochs
0 … e; the rows logged after that checkpoint are logged again as those epochs re-run.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger


class FlushLogs(pl.Callback):
    """Write the CSV log to disk at each checkpoint: after validation (the epoch's val rows;
    the checkpoint callbacks run after this one) and as the next epoch starts (the previous
    epoch's training rows, logged after its checkpoint)."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        flush(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        flush(trainer)


def flush(trainer: pl.Trainer) -> None:
    if trainer.sanity_checking or not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            logger.save()


def keep_log_rows_through(trainer: pl.Trainer, epoch: int) -> int:
    """Before a resumed cell trains: keep its CSV log's rows of epochs 0 … ``epoch`` (those
    its checkpoint covers). Returns how many rows were kept."""
    return sum(
        keep_rows_through(logger, epoch)
        for logger in trainer.loggers
        if isinstance(logger, CSVLogger)
    )


def keep_rows_through(logger: CSVLogger, epoch: int) -> int:
    """Read back the rows of epochs 0 … ``epoch`` from the logger's existing file, before the
    logger deletes it; they are written again, first, at its next save. Returns how many."""
    path = Path(logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return 0
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):  # the run was killed while writing its last row
        text = text[: text.rfind("\n") + 1]
    rows = [row for row in csv.DictReader(io.StringIO(text)) if _epoch(row) <= epoch]
    writer: Any = logger.experiment  # the logger's writer; creating it deletes the file
    writer.metrics = [*rows, *writer.metrics]
    return len(rows)


def _epoch(row: dict[str, str]) -> float:
    try:
        return float(row.get("epoch") or "inf")
    except ValueError:
        return float("inf")
