"""One cell on several processes: launch, evaluation shares and a real 2-process DDP cell."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from dataset_fixtures import TINY_SMALLCNN, tiny_negdigits

from mlcbench.cli import main
from mlcbench.distributed import EvaluationSampler, lightning_strategy, process_count
from mlcbench.errors import SpecError
from mlcbench.grid import expand
from mlcbench.metrics import average_precision_per_class
from mlcbench.plugin_manager import default_plugins
from mlcbench.scores import read_table
from mlcbench.spec import parse_spec, parse_train


@pytest.mark.parametrize(
    ("accelerator", "devices", "num_nodes", "expected"),
    [
        ("cpu", 1, 1, 1),
        ("cpu", 2, 1, 2),
        ("cpu", "auto", 1, 1),
        ("cpu", "3", 1, 3),
        ("gpu", [0, 2], 1, 2),
        ("gpu", "0,1,", 1, 2),
        ("cpu", 2, 3, 6),
    ],
)
def test_process_count_reads_devices_as_lightning_does(accelerator, devices, num_nodes, expected):
    assert process_count(accelerator, devices, num_nodes) == expected


@pytest.mark.parametrize(
    ("strategy", "processes", "expected"),
    [
        ("auto", 1, "auto"),
        ("auto", 2, "ddp_spawn"),
        ("ddp", 2, "ddp_spawn"),
        ("ddp_find_unused_parameters_true", 2, "ddp_spawn_find_unused_parameters_true"),
        ("ddp_spawn", 2, "ddp_spawn"),
        ("fsdp", 2, "fsdp"),
    ],
)
def test_relaunching_strategies_become_their_spawning_form(strategy, processes, expected):
    assert lightning_strategy(strategy, processes) == expected


@pytest.mark.parametrize("size", [0, 1, 7, 97, 100])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_evaluation_shares_cover_every_image_once(monkeypatch, size, world):
    shares = []
    for rank in range(world):
        monkeypatch.setattr(EvaluationSampler, "_place", staticmethod(lambda r=rank: (r, world)))
        sampler = EvaluationSampler(size)
        shares.append(list(sampler))
        assert len(sampler) == len(shares[-1])
        assert shares[-1] == sorted(shares[-1])
    seen = sorted(i for share in shares for i in share)
    assert seen == list(range(size))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_a_strategy_typo_fails_naming_the_closest_lightning_strategy():
    with pytest.raises(
        SpecError, match=r"train\.strategy: unknown Lightning strategy 'dpp'.*'ddp'"
    ):
        parse_train({"strategy": "dpp"})
    with pytest.raises(SpecError, match=r"train\.num_nodes: must be at least 1"):
        parse_train({"num_nodes": 0})
    for devices in (0, -2, [], [0, -1]):
        with pytest.raises(SpecError, match=r"train\.devices: "):
            parse_train({"devices": devices})


def _spec(**train: object) -> dict[str, object]:
    return {
        "name": "ddp",
        # An odd validation split: two processes get unequal shares.
        "datasets": [tiny_negdigits(256, 97)],
        "backbones": [TINY_SMALLCNN],
        "losses": ["focal+any_class"],
        "seeds": [0],
        "train": {"epochs": 2, "batch_size": 32, "accelerator": "cpu", **train},
    }


def test_how_many_processes_train_a_cell_leaves_its_id_alone():
    plugins = default_plugins()
    one = expand(parse_spec(_spec()), plugins)
    two = expand(parse_spec(_spec(devices=2, strategy="ddp", num_nodes=1)), plugins)
    assert [c.id for c in one] == [c.id for c in two]


@pytest.mark.slow
def test_a_ddp_cell_on_two_gloo_processes_scores_like_one_process(tmp_path: Path):
    """The validation mAP that picked the checkpoint was gathered from two processes with
    unequal shares; one process scoring the same checkpoint's written val scores gets the same
    number, and the score files hold every image once, in split order."""
    spec_path = tmp_path / "ddp.yaml"
    spec_path.write_text(yaml.safe_dump(_spec(devices=2, strategy="ddp", num_workers=0)))
    out = tmp_path / "out"
    assert main(["run", str(spec_path), "--out", str(out), "--no-progress"]) == 0

    (cell_dir,) = (out / "cells").iterdir()
    metrics = json.loads((cell_dir / "metrics.json").read_text())
    assert metrics["training"]["strategy"] == "ddp_spawn"
    assert metrics["training"]["processes"] == 2
    (labels_dir,) = (out / "labels").iterdir()
    for split in ("val", "test"):
        ids, _, scores = read_table(cell_dir / f"scores_{split}.csv")
        label_ids, _, labels = read_table(labels_dir / f"{split}.csv")
        assert ids == label_ids
        if split == "val":
            one_process = np.nanmean(average_precision_per_class(scores, labels))
            assert metrics["training"]["best_val_map"] == pytest.approx(one_process, abs=1e-6)
