"""Run a benchmark: train every cell that is not complete, each in its own process, score
it, and rank the results.

A cell is *complete* once its ``metrics.json`` is there (written last, atomically), *failed*
once its ``failure.json`` is, and *pending* otherwise; a pending cell with a Lightning
checkpoint resumes from it. A failing cell never stops the grid.
"""

from __future__ import annotations

import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mlcbench.cell_lock import cell_lock
from mlcbench.data import SPLITS, MultiLabelDataset
from mlcbench.errors import MlcbenchError, PluginError
from mlcbench.experiment_logging import finish_wandb, wandb_logger
from mlcbench.files import remove_stale_temporaries, write_json
from mlcbench.grid import Cell, ResolvedPlugin, expand
from mlcbench.isolation import describe_error, run_isolated
from mlcbench.plugin_manager import Plugins
from mlcbench.provenance import cpu_model, git_commit, gpu_model
from mlcbench.results import CellPaths, evaluate_cell, is_complete, labels_path, read_failure
from mlcbench.scores import write_scores, write_table
from mlcbench.spec import BenchmarkSpec, TrainConfig, WandbConfig

if TYPE_CHECKING:
    from mlcbench.training import MultiLabelModule

Echo = Callable[[str], None]


@dataclass
class RunSummary:
    """What a run did, for the closing lines and the exit code."""

    cells: int = 0
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: Cell id → the one-line reason it failed (now or in an earlier run).
    failed: dict[str, str] = field(default_factory=dict)
    #: Cells another process was training when this run reached them.
    busy: list[str] = field(default_factory=list)
    leaderboard: Path | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class RunOptions:
    """How ``run_benchmark`` treats existing results and isolates cells."""

    #: Re-run every cell, complete ones included, from scratch.
    force: bool = False
    #: Also re-run cells that failed in an earlier run (by default they are reported).
    retry_failed: bool = False
    #: Train each cell in a process of its own (off only for debugging).
    isolate: bool = True
    #: Show Lightning's progress bar within each cell.
    progress: bool = True
    #: ``local`` trains cells one after another here; ``ray`` runs them as Ray tasks.
    executor: Literal["local", "ray"] = "local"
    #: Address of an existing Ray cluster (``auto``, ``ray://host:10001``); None starts a
    #: local Ray instance.
    ray_address: str | None = None
    #: Resources each cell asks of Ray.
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    #: Log every cell to Weights & Biases too (None: CSV logs only).
    wandb: WandbConfig | None = None


def run_benchmark(
    spec: BenchmarkSpec,
    plugins: Plugins,
    *,
    out_dir: Path,
    leaderboard_dir: Path,
    options: RunOptions = RunOptions(),
    echo: Echo = print,
) -> RunSummary:
    """Train and score every cell that needs it, then write the leaderboard."""
    from mlcbench.leaderboard import write_leaderboard

    started = time.perf_counter()
    cells = expand(spec, plugins)
    summary = RunSummary(cells=len(cells))
    if spec.reference:
        # The leaderboard is rebuilt from results on disk: the published numbers go there too.
        write_json(out_dir / REFERENCE_FILE, reference_rows(spec))
    pending: list[tuple[str, Cell]] = []
    for index, cell in enumerate(cells, start=1):
        paths = CellPaths(out_dir, cell.id)
        prefix = f"[{index}/{len(cells)}] {cell.describe()} (cell {cell.id})"
        if not options.force and is_complete(paths):
            echo(f"{prefix}: complete, skipped")
            summary.skipped.append(cell.id)
            continue
        earlier_failure = read_failure(paths)
        if earlier_failure and not (options.force or options.retry_failed):
            echo(
                f"{prefix}: failed in an earlier run ({earlier_failure}); --retry-failed re-runs it"
            )
            summary.failed[cell.id] = earlier_failure
            continue
        pending.append((prefix, cell))
    for dataset in {cell.dataset.key: cell.dataset for _, cell in pending}.values():
        prepare_dataset(dataset, out_dir)
    if options.executor == "ray":
        from mlcbench.ray_executor import run_on_ray

        attempts = run_on_ray(pending, spec, plugins, out_dir, options, echo)
    else:
        attempts = (
            (
                prefix,
                cell,
                attempt_cell(cell, spec, plugins, out_dir, options, _announce(prefix, echo)),
            )
            for prefix, cell in pending
        )
    for prefix, cell, attempt in attempts:
        _record(prefix, cell, attempt, summary, echo)
    if summary.trained or summary.skipped:
        summary.leaderboard = write_leaderboard(spec.name, [out_dir], leaderboard_dir)
    summary.seconds = time.perf_counter() - started
    return summary


REFERENCE_FILE = "reference.json"


def reference_rows(spec: BenchmarkSpec) -> list[dict[str, Any]]:
    """The spec's published numbers, one JSON object a row, metrics in percent."""
    return [
        {
            "dataset": row.dataset,
            "backbone": row.backbone,
            "loss": row.loss,
            "metrics": row.metrics(),
            "source": results.source,
            "split": results.split,
            "threshold": results.threshold,
        }
        for results in spec.reference
        for row in results.rows
    ]


@dataclass(frozen=True)
class Attempt:
    """What became of one try at a cell."""

    status: Literal["trained", "skipped", "busy", "failed"]
    reason: str = ""
    seconds: float = 0.0


def attempt_cell(
    cell: Cell,
    spec: BenchmarkSpec,
    plugins: Plugins,
    out_dir: Path,
    options: RunOptions,
    on_start: Callable[[bool], None] | None = None,
) -> Attempt:
    """Train one cell under its lock, wherever this runs (the runner or a cluster worker).

    ``on_start(resuming)`` is told when training starts. A failure is written to the cell's
    ``failure.json`` with its traceback.
    """
    paths = CellPaths(out_dir, cell.id)
    with cell_lock(paths.lock) as held:
        if not held:
            return Attempt("busy")
        if not options.force and is_complete(paths):  # finished while this run waited
            return Attempt("skipped")
        if options.force:
            _clear(paths)
        remove_stale_temporaries(paths.root)
        paths.failure.unlink(missing_ok=True)
        if on_start is not None:
            on_start(paths.last_checkpoint.is_file())
        started = time.perf_counter()
        reason, details = _train(cell, spec, plugins, out_dir, options)
        seconds = time.perf_counter() - started
        if reason:
            write_json(paths.failure, {"cell_id": cell.id, "reason": reason, "traceback": details})
            return Attempt("failed", reason, seconds)
        return Attempt("trained", seconds=seconds)


def _announce(prefix: str, echo: Echo) -> Callable[[bool], None]:
    def announce(resuming: bool) -> None:
        echo(f"{prefix}: {'resuming from its last checkpoint' if resuming else 'training'}")

    return announce


def _record(prefix: str, cell: Cell, attempt: Attempt, summary: RunSummary, echo: Echo) -> None:
    if attempt.status == "trained":
        echo(f"{prefix}: done in {attempt.seconds:.1f} s")
        summary.trained.append(cell.id)
    elif attempt.status == "skipped":
        echo(f"{prefix}: completed by another process, skipped")
        summary.skipped.append(cell.id)
    elif attempt.status == "busy":
        echo(f"{prefix}: another process is training it, skipped")
        summary.busy.append(cell.id)
    else:
        echo(f"{prefix}: FAILED: {attempt.reason}")
        summary.failed[cell.id] = attempt.reason


def _train(
    cell: Cell, spec: BenchmarkSpec, plugins: Plugins, out_dir: Path, options: RunOptions
) -> tuple[str, str]:
    """Train one cell; return ('', '') on success, else the one-line reason it failed and
    the traceback (kept in the cell's failure.json, out of the run's output)."""
    if options.isolate:
        outcome = run_isolated(train_cell, cell, spec, plugins, out_dir, options)
        if outcome.interrupted:
            raise KeyboardInterrupt
        return outcome.reason, outcome.traceback
    try:
        train_cell(cell, spec, plugins, out_dir, options)
    except Exception as error:
        return describe_error(error), traceback.format_exc()
    return "", ""


def _clear(paths: CellPaths) -> None:
    """Forget a cell's earlier results (the lock file stays: this process holds it)."""
    if not paths.root.is_dir():
        return
    for entry in paths.root.iterdir():
        if entry == paths.lock:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def train_cell(
    cell: Cell, spec: BenchmarkSpec, plugins: Plugins, out_dir: Path, options: RunOptions
) -> dict[str, Any]:
    """Build the cell's dataset and train it (the body of a cell's own process)."""
    paths = CellPaths(out_dir, cell.id)
    wandb = None
    if options.wandb is not None:
        wandb = wandb_logger(options.wandb, cell, spec.name, str(paths.root))
    metrics = run_cell(
        cell,
        build_dataset(cell.dataset),
        spec,
        plugins,
        paths,
        progress=options.progress,
        loggers=[wandb] if wandb is not None else [],
    )
    finish_wandb(wandb, metrics)
    return metrics


def build_dataset(dataset: ResolvedPlugin) -> MultiLabelDataset:
    """Build a dataset through its plugin and check it keeps the contract."""
    args = () if dataset.variant is None else (dataset.variant,)
    built = dataset.entry.factory(*args, **dataset.options)
    if not isinstance(built, MultiLabelDataset):
        raise PluginError(
            f"dataset plugin {dataset.spec.name!r} ({dataset.entry.provider.distribution}) "
            f"returned {type(built).__name__}, not a MultiLabelDataset"
        )
    return built


def prepare_dataset(dataset: ResolvedPlugin, out_dir: Path) -> MultiLabelDataset:
    """Build a dataset and write its label files and manifest, once per run directory."""
    built = build_dataset(dataset)
    remove_stale_temporaries(labels_path(out_dir, dataset.key, "train").parent)
    for split_name in SPLITS:
        split = built.splits[split_name]
        path = labels_path(out_dir, dataset.key, split_name)
        write_table(path, split.image_ids, built.class_names, split.labels.astype(np.int64))
    write_json(
        path.parent / "manifest.json",
        {
            "dataset": built.name,
            "config": dataset.config(),
            "splits": built.manifest(),
            # Submissions (mlcbench submit) are scored without building the dataset.
            "class_weights": dict(built.class_weights) if built.class_weights else None,
        },
    )
    return built


def run_cell(
    cell: Cell,
    dataset: MultiLabelDataset,
    spec: BenchmarkSpec,
    plugins: Plugins,
    paths: CellPaths,
    *,
    progress: bool = True,
    loggers: Sequence[Any] = (),
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train one cell, write its scores and metrics; ``metrics.json`` goes last."""
    import pytorch_lightning as pl

    from mlcbench.training import resolve_runtime, train_and_predict

    write_json(paths.config, dict(cell.config))
    pl.seed_everything(cell.seed, workers=True, verbose=False)
    module = build_module(cell, dataset, spec.train, plugins)
    runtime = resolve_runtime(spec.train, dataset)
    started, started_at = time.perf_counter(), time.time()
    trained = train_and_predict(
        module,
        dataset,
        spec.train,
        runtime,
        paths.root,
        progress=progress,
        loggers=loggers,
        callbacks=callbacks,
    )
    train_seconds = time.perf_counter() - started
    for split_name, probabilities in trained.probabilities.items():
        split = dataset.splits[split_name]
        write_scores(
            paths.scores(split_name),
            split.image_ids,
            dataset.class_names,
            probabilities,
            dataset=dataset.name,
            split=split_name,
            labels_path=labels_path(paths.out_dir, cell.dataset.key, split_name),
            config=cell.config,
        )
    training = {
        "best_epoch": trained.best_epoch,
        "best_val_map": trained.best_val_map,
        "seconds": round(train_seconds, 3),
        # Wall-clock start and end (Unix time), to see which cells ran side by side.
        "started_at": round(started_at, 3),
        "finished_at": round(time.time(), 3),
        "accelerator": runtime.accelerator,
        "precision": runtime.precision,
        "devices": runtime.devices,
        "strategy": runtime.strategy,
        "processes": runtime.processes,
        "cpu": cpu_model(),
        "gpu": gpu_model(),
        "git_commit": git_commit(),
    }
    return evaluate_cell(cell, dataset, paths, training)


def build_module(
    cell: Cell, dataset: MultiLabelDataset, train: TrainConfig, plugins: Plugins
) -> MultiLabelModule:
    """The cell's backbone and loss in a Lightning module (seed the RNGs first)."""
    from mlcbench.losses import build_loss
    from mlcbench.training import MultiLabelModule

    train_split = dataset.splits["train"]
    loss = build_loss(
        cell.loss,
        plugins,
        class_counts=train_split.class_counts().tolist(),
        negative_count=train_split.negatives,
    )
    return MultiLabelModule(
        _build_backbone(cell.backbone, dataset),
        loss,
        train,
        mean=dataset.mean,
        std=dataset.std,
        augmentations=dataset.augmentations,
        steps_per_epoch=max(1, len(train_split.image_ids) // train.batch_size),
    )


def _build_backbone(backbone: ResolvedPlugin, dataset: MultiLabelDataset) -> Any:
    args = () if backbone.variant is None else (backbone.variant,)
    try:
        return backbone.entry.factory(
            *args,
            num_classes=len(dataset.class_names),
            in_channels=dataset.in_channels,
            **backbone.options,
        )
    except MlcbenchError:
        raise
    except Exception as error:
        raise PluginError(
            f"{backbone.spec.where}: backbone {backbone.spec.name!r} failed to build: "
            f"{type(error).__name__}: {error}"
        ) from error
