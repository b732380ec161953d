"""Experiment tracking: every cell logs to Lightning's CSV logger in its folder; with
Weights & Biases configured, also to a W&B run with its resolved config, grouped by
benchmark, tagged by dataset, backbone, loss and seed, and its final metrics as summary.

W&B is optional at run time: a run that cannot start (no network, no login) prints one
warning and the cell trains on with the CSV logger alone.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlcbench.grid import Cell
    from mlcbench.spec import WandbConfig

#: Metrics copied into a W&B run's summary, per threshold policy of the test split.
SUMMARY_METRICS = ("map", "macro_f1", "macro_f2", "f1_neg", "f1_pos", "neg_false_alarm_rate")


def wandb_logger(settings: WandbConfig, cell: Cell, benchmark: str, save_dir: str) -> Any:
    """A Lightning WandbLogger for one cell, or None (with a warning) when W&B cannot start."""
    try:
        from pytorch_lightning.loggers import WandbLogger

        logger = WandbLogger(
            project=settings.project,
            entity=settings.entity,
            mode=settings.mode,
            group=benchmark,
            name=f"{cell.describe()} ({cell.id})",
            id=f"{benchmark}-{cell.id}",
            tags=[
                f"dataset:{cell.dataset.spec.display_name}",
                f"backbone:{cell.backbone.spec.display_name}",
                f"loss:{cell.loss.display_name}",
                f"seed:{cell.seed}",
            ],
            # The resolved config only: never environment variables or credentials.
            config={"cell_id": cell.id, **cell.config},
            save_dir=save_dir,
            log_model=False,
        )
        logger.experiment  # noqa: B018 - starts the run now, so a failure shows here
    except Exception as error:
        print(
            f"mlcbench: warning: Weights & Biases could not start ({type(error).__name__}: "
            f"{error}); cell {cell.id} logs to CSV only",
            file=sys.stderr,
        )
        return None
    return logger


def finish_wandb(logger: Any, metrics: dict[str, Any]) -> None:
    """Put the cell's final test metrics in the run summary and close the run."""
    if logger is None:
        return
    summary = {}
    for policy, block in metrics.get("test", {}).items():
        for name in SUMMARY_METRICS:
            if isinstance(block.get(name), int | float):
                summary[f"test/{policy}/{name}"] = block[name]
    logger.experiment.summary.update(summary)
    logger.experiment.finish()
