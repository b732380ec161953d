"""Train one cell with PyTorch Lightning and predict its scores.

GPU-first: uint8 batches travel to the device and are normalised and augmented there,
loaders pin memory and use many workers, precision ``auto`` means 16-bit mixed precision
on a GPU. On a CPU-only machine the same code runs in float32 with in-process loading.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from mlcbench.data import MultiLabelDataset
from mlcbench.distributed import EvaluationSampler, lightning_strategy, process_count
from mlcbench.errors import MlcbenchError
from mlcbench.spec import TrainConfig
from mlcbench.training_log import FlushLogs, keep_log_rows_through
from mlcbench.validation_metric import MultiLabelAveragePrecision

MONITOR = "val/map"
LOG_EVERY_N_STEPS = 10
WARMUP_START_FACTOR = 0.01


class DivergedError(MlcbenchError):
    """Training produced NaN or infinite values; the cell fails instead of writing scores."""


class RandomStates(pl.Callback):
    """Saves the random number generators with each checkpoint, so a cell resumed after an
    interruption draws the same shuffles and augmentations as one that never stopped."""

    def state_dict(self) -> dict[str, Any]:
        numpy_state: Any = np.random.get_state()
        return {
            "python": random.getstate(),
            "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        name, keys, *rest = state_dict["numpy"]
        np.random.set_state((name, keys.numpy(), *rest))
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class MultiLabelModule(pl.LightningModule):
    """A backbone and a loss, trained on uint8 image batches."""

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        backbone: nn.Module,
        loss: nn.Module,
        train: TrainConfig,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        augmentations: Sequence[str] = (),
        steps_per_epoch: int = 1,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.loss = loss
        self.train_config = train
        self.augmentations = tuple(augmentations)
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        # Collects every process's validation images and scores them together under DDP.
        self.val_map = MultiLabelAveragePrecision()
        self._train_loss = torch.zeros(())
        self._train_steps = 0
        self._val_loss = torch.zeros(())
        self._val_steps = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A DDP process spawned for this cell unpickles the module first: quiet it there too.
        quiet_lightning()
        super().__setstate__(state)

    def normalise(self, images: Tensor) -> Tensor:
        return (images.float() / 255.0 - self.mean) / self.std

    def forward(self, images: Tensor) -> Tensor:
        return self.backbone(self.normalise(images))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_index: int) -> Tensor:
        images, labels = batch
        inputs = augment(self.normalise(images), self.augmentations)
        loss = self.loss(self.backbone(inputs), labels)
        # self.log costs about a millisecond a call: log every few steps, sum the rest on the
        # device (no synchronisation) and log the epoch mean once.
        self._train_loss = self._train_loss + loss.detach()
        self._train_steps += 1
        if batch_index % LOG_EVERY_N_STEPS == 0:
            # One synchronisation every few steps catches a diverging run within them.
            self._fail_if_diverged(batch_index)
            self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def _fail_if_diverged(self, batch_index: int) -> None:
        if not bool(torch.isfinite(self._train_loss)):
            raise DivergedError(
                f"the training loss became NaN or infinite by epoch {self.current_epoch}, "
                f"step {batch_index}; lower train.lr, keep gradient_clip on, or check the data"
            )

    def on_train_epoch_end(self) -> None:
        self._fail_if_diverged(self._train_steps)
        if self._train_steps:
            self.log(
                "train/epoch_loss",
                self._train_loss / self._train_steps,
                on_epoch=True,
                sync_dist=True,
            )
        self._train_loss = torch.zeros((), device=self.device)
        self._train_steps = 0

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_index: int) -> None:
        images, labels = batch
        logits = self(images)
        self._val_loss = self._val_loss + self.loss(logits, labels).detach()
        self._val_steps += 1
        self.val_map.update(torch.sigmoid(logits.float()), labels)

    def on_validation_epoch_end(self) -> None:
        # The metric gathers every process's share of the split: all hold the same mAP.
        mean_ap = self.val_map.compute()
        self.val_map.reset()
        if not bool(torch.isfinite(mean_ap)):
            raise DivergedError(
                f"the model's validation outputs are NaN at epoch {self.current_epoch}; "
                "lower train.lr or check the data"
            )
        # sync_dist averages equal values; it only tells Lightning they agree.
        self.log(MONITOR, mean_ap, prog_bar=True, sync_dist=True)
        if self._val_steps:
            self.log("val/loss", self._val_loss / self._val_steps, sync_dist=True)
        self._val_loss = torch.zeros((), device=self.device)
        self._val_steps = 0

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_index: int) -> Tensor:
        images, _ = batch
        return torch.sigmoid(self(images).float())

    def configure_optimizers(self) -> Any:
        config = self.train_config
        parameters = [p for p in self.parameters() if p.requires_grad]
        optimizer: torch.optim.Optimizer
        if config.optimizer == "adamw":
            optimizer = torch.optim.AdamW(
                parameters, lr=config.lr, weight_decay=config.weight_decay
            )
        elif config.optimizer == "adam":
            optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
            )
        schedule = learning_rate_factor(config, self.steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def learning_rate_factor(config: TrainConfig, steps_per_epoch: int) -> Any:
    """Per-step multiplier of ``lr``: linear warm-up, then cosine decay to ``min_lr``."""
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    total_steps = max(1, config.epochs * steps_per_epoch)
    floor = min(1.0, config.min_lr / config.lr) if config.lr > 0 else 0.0

    def factor(step: int) -> float:
        if step < warmup_steps:
            progress = step / warmup_steps
            return WARMUP_START_FACTOR + (1.0 - WARMUP_START_FACTOR) * progress
        if config.scheduler == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def augment(images: Tensor, augmentations: Sequence[str]) -> Tensor:
    """Batch augmentations on the device, per image, without host synchronisation."""
    if not augmentations:
        return images
    batch = images.shape[0]
    if "hflip" in augmentations:
        flip = torch.rand(batch, 1, 1, 1, device=images.device) < 0.5
        images = torch.where(flip, images.flip(-1), images)
    if "color_jitter" in augmentations:
        brightness = 1.0 + (torch.rand(batch, 1, 1, 1, device=images.device) - 0.5) * 0.2
        shift = (torch.rand(batch, 1, 1, 1, device=images.device) - 0.5) * 0.2
        images = images * brightness + shift
    if "rotate5" in augmentations:
        angle = (torch.rand(batch, device=images.device) - 0.5) * math.radians(10.0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        zero = torch.zeros_like(angle)
        theta = torch.stack([cos, -sin, zero, sin, cos, zero], dim=1).view(batch, 2, 3)
        grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
        images = torch.nn.functional.grid_sample(images, grid, align_corners=False)
    return images


@dataclass(frozen=True)
class Runtime:
    """How a cell actually ran: recorded beside its results, never part of its id."""

    accelerator: str
    precision: str
    devices: Any
    num_workers: int
    pin_memory: bool
    #: The Lightning strategy as handed over (see ``distributed.lightning_strategy``).
    strategy: str = "auto"
    num_nodes: int = 1
    #: Processes training one cell: devices per node × nodes.
    processes: int = 1


def resolve_runtime(train: TrainConfig, dataset: MultiLabelDataset) -> Runtime:
    has_gpu = torch.cuda.is_available() and train.accelerator in ("auto", "gpu", "cuda")
    precision = train.precision
    if precision == "auto":
        if has_gpu:
            precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        else:
            precision = "32-true"
    if train.num_workers == "auto":
        num_workers = 0 if dataset.in_memory else min(8, os.cpu_count() or 1)
    else:
        num_workers = int(train.num_workers)
    accelerator = (
        "gpu" if has_gpu else ("cpu" if train.accelerator == "auto" else train.accelerator)
    )
    processes = process_count(accelerator, train.devices, train.num_nodes)
    return Runtime(
        accelerator,
        precision,
        train.devices,
        num_workers,
        pin_memory=has_gpu,
        strategy=lightning_strategy(train.strategy, processes),
        num_nodes=train.num_nodes,
        processes=processes,
    )


def make_loader(
    images: Dataset[Any], runtime: Runtime, batch_size: int, *, shuffle: bool
) -> DataLoader[Any]:
    return DataLoader(
        images,
        batch_size=batch_size,
        shuffle=shuffle,
        # Under DDP every process evaluates its own share, no image twice.
        sampler=None if shuffle else EvaluationSampler(len(images)),  # type: ignore[arg-type]
        # A last batch of one image breaks batch norm; dropping it costs one image an epoch.
        drop_last=shuffle and len(images) > batch_size,  # type: ignore[arg-type]
        num_workers=runtime.num_workers,
        pin_memory=runtime.pin_memory,
        persistent_workers=runtime.num_workers > 0,
    )


@dataclass(frozen=True)
class TrainedCell:
    """Probabilities of the val-selected checkpoint on val and test, and how training went."""

    probabilities: dict[str, np.ndarray]
    best_epoch: int
    best_val_map: float
    runtime: Runtime


def quiet_lightning() -> None:
    """Keep Lightning's start-up banners and tips out of the run's own progress lines."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (
        r".*is smaller than the logging interval.*",  # tiny datasets in tests and quickstart
        r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # inside Lightning itself
        r".*does not have many workers.*",  # in-memory datasets need none
        r".*exists and is not empty.*",  # a resumed cell reuses its log and checkpoint folders
    ):
        warnings.filterwarnings("ignore", message=message)


def make_trainer(
    train: TrainConfig,
    runtime: Runtime,
    cell_dir: Path,
    *,
    progress: bool = True,
    loggers: Sequence[Any] = (),
    callbacks: Sequence[pl.Callback] = (),
) -> tuple[pl.Trainer, Any]:
    """The Lightning trainer of a cell and its best-val-mAP checkpoint callback."""
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    quiet_lightning()
    checkpoints = ModelCheckpoint(
        dirpath=cell_dir / "checkpoints",
        filename="best",
        monitor=MONITOR,
        mode="max",
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )
    trainer = pl.Trainer(
        accelerator=runtime.accelerator,
        devices=runtime.devices,
        strategy=runtime.strategy,
        num_nodes=runtime.num_nodes,
        precision=runtime.precision,  # type: ignore[arg-type]
        max_epochs=train.epochs,
        gradient_clip_val=train.gradient_clip,
        callbacks=[checkpoints, RandomStates(), FlushLogs(), *callbacks],
        logger=[CSVLogger(cell_dir, name="logs", version=""), *loggers],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=LOG_EVERY_N_STEPS,
        default_root_dir=cell_dir,
    )
    return trainer, checkpoints


def make_loaders(
    dataset: MultiLabelDataset, runtime: Runtime, batch_size: int
) -> dict[str, DataLoader[Any]]:
    return {
        name: make_loader(split.images, runtime, batch_size, shuffle=name == "train")
        for name, split in dataset.splits.items()
    }


@dataclass(frozen=True)
class Resume:
    """Where an interrupted cell picks up: its last checkpoint, saved after ``epoch``."""

    checkpoint: Path
    epoch: int


def resumable_checkpoint(folder: Path) -> Resume | None:
    """The last checkpoint of an interrupted run, if it loads; a checkpoint cut short by a
    crash is discarded with its folder and the cell starts over."""
    last = folder / "last.ckpt"
    if not last.is_file():
        return None
    try:
        state = torch.load(last, map_location="cpu", weights_only=True)
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return Resume(last, int(state.get("epoch", -1)))


def train_and_predict(
    module: MultiLabelModule,
    dataset: MultiLabelDataset,
    train: TrainConfig,
    runtime: Runtime,
    cell_dir: Path,
    *,
    progress: bool = True,
    loggers: Sequence[Any] = (),
    callbacks: Sequence[pl.Callback] = (),
) -> TrainedCell:
    """Fit, keep the checkpoint with the best validation mAP, predict val and test with it.
    ``callbacks`` join the trainer's own (a tuning study's pruner, for one)."""
    resume = resumable_checkpoint(cell_dir / "checkpoints")
    trainer, checkpoints = make_trainer(
        train, runtime, cell_dir, progress=progress, loggers=loggers, callbacks=callbacks
    )
    if resume is not None:
        keep_log_rows_through(trainer, resume.epoch)
    loaders = make_loaders(dataset, runtime, train.batch_size)
    # An interrupted cell resumes from its last epoch; weights_only: a checkpoint is data.
    trainer.fit(
        module,
        loaders["train"],
        loaders["val"],
        ckpt_path=None if resume is None else resume.checkpoint,
        weights_only=True,
    )
    best_path = checkpoints.best_model_path
    if not best_path:
        raise MlcbenchError("training ended without a checkpoint; check train.epochs")
    # weights_only: a checkpoint file is data, never code to run.
    state = torch.load(best_path, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])
    predictor = trainer if runtime.processes == 1 else make_predictor(runtime, progress=progress)
    probabilities = {}
    for split in ("val", "test"):
        batches = predictor.predict(module, loaders[split])
        probabilities[split] = torch.cat(batches).numpy().astype(np.float32)  # type: ignore[arg-type]
    return TrainedCell(
        probabilities=probabilities,
        best_epoch=int(state.get("epoch", -1)),
        best_val_map=best_score(state),
        runtime=runtime,
    )


def make_predictor(runtime: Runtime, *, progress: bool) -> pl.Trainer:
    """One process on one device: the score files of a cell trained on several come out
    whole and in split order, as a single device would write them."""
    devices = runtime.devices
    first = [devices[0]] if isinstance(devices, (list, tuple)) else 1
    return pl.Trainer(
        accelerator=runtime.accelerator,
        devices=first,
        precision=runtime.precision,  # type: ignore[arg-type]
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
    )


def best_score(state: dict[str, Any]) -> float:
    """The validation mAP a checkpoint was chosen for, from its own checkpoint callback state
    (it is also there when training ran in other processes)."""
    for key, callback in state.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and callback.get("best_model_score") is not None:
            return float(callback["best_model_score"])
    return float("nan")
