"""How much does mlcbench add to the cost of training the backbone itself?

Times epochs of a quickstart cell (negdigits × smallcnn × focal+any_class) trained through
mlcbench — the Lightning trainer, the loss plugin, validation mAP, checkpointing — against a
bare PyTorch loop with the same model, data, loader, batch size and optimizer (plain BCE,
a validation forward pass, no metrics). Runs alternate, and the medians are compared.

    python benchmarks/speed/training_overhead.py [--epochs 3] [--repeats 3]

Target: ratio at most 1.10.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mlcbench.grid import expand
from mlcbench.plugin_manager import default_plugins
from mlcbench.runner import build_module, prepare_dataset
from mlcbench.spec import load_spec
from mlcbench.training import make_loaders, make_trainer, resolve_runtime

QUICKSTART = Path(__file__).resolve().parents[1] / "quickstart.yaml"


def quickstart_cell(plugins):
    """The quickstart's negdigits × smallcnn × focal+any_class cell, seed 0."""
    spec = load_spec(QUICKSTART)
    for cell in expand(spec, plugins):
        if (cell.backbone.spec.name, cell.loss.name, cell.seed) == (
            "smallcnn",
            "focal+any_class",
            0,
        ):
            return spec, cell
    raise SystemExit(f"{QUICKSTART} no longer has a smallcnn × focal+any_class cell")


def time_mlcbench(cell, dataset, spec, plugins, epochs: int, workdir: Path) -> float:
    """Seconds per epoch of trainer.fit, validation and checkpointing included."""
    import pytorch_lightning as pl

    train = dataclasses.replace(spec.train, epochs=epochs)
    pl.seed_everything(0, verbose=False)
    module = build_module(cell, dataset, train, plugins)
    runtime = resolve_runtime(train, dataset)
    trainer, _ = make_trainer(train, runtime, workdir, progress=False)
    loaders = make_loaders(dataset, runtime, train.batch_size)
    started = time.perf_counter()
    trainer.fit(module, loaders["train"], loaders["val"])
    return (time.perf_counter() - started) / epochs


def time_bare_loop(cell, dataset, spec, plugins, epochs: int) -> float:
    """Seconds per epoch of the loop a user would write by hand."""
    torch.manual_seed(0)
    module = build_module(cell, dataset, spec.train, plugins)
    model = module.backbone
    runtime = resolve_runtime(spec.train, dataset)
    loaders = make_loaders(dataset, runtime, spec.train.batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=spec.train.lr, weight_decay=spec.train.weight_decay
    )
    mean, std = module.mean, module.std
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for images, labels in loaders["train"]:
            logits = model((images.float() / 255.0 - mean) / std)
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for images, _ in loaders["val"]:
                torch.sigmoid(model((images.float() / 255.0 - mean) / std))
    return (time.perf_counter() - started) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    plugins = default_plugins()
    spec, cell = quickstart_cell(plugins)
    with tempfile.TemporaryDirectory() as workdir:
        dataset = prepare_dataset(cell.dataset, Path(workdir))
        ours, bare = [], []
        # Warm-up run of each, untimed: first-call allocations and imports.
        time_bare_loop(cell, dataset, spec, plugins, 1)
        time_mlcbench(cell, dataset, spec, plugins, 1, Path(workdir) / "warmup")
        for repeat in range(args.repeats):
            bare.append(time_bare_loop(cell, dataset, spec, plugins, args.epochs))
            ours.append(
                time_mlcbench(
                    cell, dataset, spec, plugins, args.epochs, Path(workdir) / str(repeat)
                )
            )
    train_images = len(dataset.splits["train"].image_ids)
    print(
        f"negdigits ({train_images} train images) × smallcnn, batch {spec.train.batch_size}, "
        f"{torch.get_num_threads()} threads, {args.epochs} epochs × {args.repeats} repeats"
    )
    print(f"bare PyTorch loop:      {statistics.median(bare):.3f} s/epoch")
    print(f"mlcbench (Lightning):   {statistics.median(ours):.3f} s/epoch")
    print(
        f"ratio mlcbench / bare:  {statistics.median(ours) / statistics.median(bare):.3f}"
        "  (target ≤ 1.10)"
    )


if __name__ == "__main__":
    main()
