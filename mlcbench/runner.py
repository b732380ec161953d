"""Run a benchmark: build each dataset once, train every cell, score it, rank the results."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlcbench.data import SPLITS, MultiLabelDataset
from mlcbench.errors import MlcbenchError, PluginError
from mlcbench.files import write_json
from mlcbench.grid import Cell, ResolvedPlugin, expand
from mlcbench.plugin_manager import Plugins
from mlcbench.results import CellPaths, evaluate_cell, is_complete, labels_path
from mlcbench.scores import write_scores, write_table
from mlcbench.spec import BenchmarkSpec, TrainConfig

if TYPE_CHECKING:
    from mlcbench.training import MultiLabelModule

Echo = Callable[[str], None]


@dataclass
class RunSummary:
    """What a run did, for the closing lines and the exit code."""

    cells: int = 0
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    leaderboard: Path | None = None
    seconds: float = 0.0


def run_benchmark(
    spec: BenchmarkSpec,
    plugins: Plugins,
    *,
    out_dir: Path,
    leaderboard_dir: Path,
    progress: bool = True,
    echo: Echo = print,
) -> RunSummary:
    """Train and score every cell that is not complete yet, then write the leaderboard."""
    from mlcbench.leaderboard import write_leaderboard

    started = time.perf_counter()
    cells = expand(spec, plugins)
    summary = RunSummary(cells=len(cells))
    datasets: dict[str, MultiLabelDataset] = {}
    for index, cell in enumerate(cells, start=1):
        paths = CellPaths(out_dir, cell.id)
        prefix = f"[{index}/{len(cells)}] {cell.describe()} (cell {cell.id})"
        if is_complete(paths):
            echo(f"{prefix}: complete, skipped")
            summary.skipped.append(cell.id)
            continue
        echo(f"{prefix}: training")
        if cell.dataset.key not in datasets:
            datasets[cell.dataset.key] = prepare_dataset(cell.dataset, out_dir)
        cell_started = time.perf_counter()
        try:
            run_cell(cell, datasets[cell.dataset.key], spec, plugins, paths, progress=progress)
        except MlcbenchError as error:
            raise type(error)(f"cell {cell.id} ({cell.describe()}): {error}") from error
        except Exception as error:
            raise MlcbenchError(
                f"cell {cell.id} ({cell.describe()}) failed: {type(error).__name__}: "
                f"{' '.join(str(error).split())}"
            ) from error
        echo(f"{prefix}: done in {time.perf_counter() - cell_started:.1f} s")
        summary.trained.append(cell.id)
    summary.leaderboard = write_leaderboard(spec.name, [out_dir], leaderboard_dir)
    summary.seconds = time.perf_counter() - started
    return summary


def prepare_dataset(dataset: ResolvedPlugin, out_dir: Path) -> MultiLabelDataset:
    """Build a dataset through its plugin and write its label files once."""
    args = () if dataset.variant is None else (dataset.variant,)
    built = dataset.entry.factory(*args, **dataset.options)
    if not isinstance(built, MultiLabelDataset):
        raise PluginError(
            f"dataset plugin {dataset.spec.name!r} ({dataset.entry.provider.distribution}) "
            f"returned {type(built).__name__}, not a MultiLabelDataset"
        )
    for split_name in SPLITS:
        split = built.splits[split_name]
        path = labels_path(out_dir, dataset.key, split_name)
        write_table(path, split.image_ids, built.class_names, split.labels.astype(np.int64))
    write_json(
        path.parent / "manifest.json",
        {"dataset": built.name, "config": dataset.config(), "splits": built.manifest()},
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
) -> dict[str, Any]:
    """Train one cell, write its scores and metrics; ``metrics.json`` goes last."""
    import pytorch_lightning as pl

    from mlcbench.training import resolve_runtime, train_and_predict

    write_json(paths.config, dict(cell.config))
    pl.seed_everything(cell.seed, workers=True, verbose=False)
    module = build_module(cell, dataset, spec.train, plugins)
    runtime = resolve_runtime(spec.train, dataset)
    started = time.perf_counter()
    trained = train_and_predict(module, dataset, spec.train, runtime, paths.root, progress=progress)
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
        "accelerator": runtime.accelerator,
        "precision": runtime.precision,
        "devices": runtime.devices,
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
