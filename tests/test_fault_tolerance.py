"""A grid survives being killed, crashing or diverging cells, damaged files and a second run
on the same directory, without losing or duplicating a result."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from dataset_fixtures import TINY_SMALLCNN, tiny_negdigits

SPEC = {
    "name": "faults",
    "datasets": [tiny_negdigits(256, 96)],
    "backbones": [TINY_SMALLCNN],
    "losses": ["bce", "focal+any_class"],
    "seeds": [0, 1],
    "train": {"epochs": 4, "batch_size": 32, "warmup_epochs": 0.5},
}

BROKEN_PLUGIN = '''
import os, signal
import torch
from torch import nn
import mlcbench


class Crash(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(1, 1)

    def forward(self, images):
        os.kill(os.getpid(), signal.SIGSEGV)


def segfaulter(*, num_classes: int, in_channels: int) -> nn.Module:
    """Kills its own process, as a broken native extension would."""
    return Crash()


class NotANumber(nn.Module):
    def forward(self, logits, targets):
        return logits * float("nan")


def nan_loss() -> nn.Module:
    """Returns NaN everywhere."""
    return NotANumber()


@mlcbench.hookimpl
def mlcbench_register_backbones(register):
    register("segfaulter", segfaulter)


@mlcbench.hookimpl
def mlcbench_register_losses(register):
    register("nan_loss", nan_loss, role="base")
'''


def write_spec(folder: Path, spec: dict) -> Path:
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def mlcbench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mlcbench", *args, "--no-progress"]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def start(*args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "mlcbench", *args, "--no-progress"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def validation_log(out: Path) -> dict[str, list[tuple[str, str]]]:
    """Per cell, the (epoch, val mAP) rows of its CSV training log."""
    table = {}
    for path in sorted(out.glob("cells/*/logs/metrics.csv")):
        with path.open(newline="") as stream:
            rows = [(r["epoch"], r["val/map"]) for r in csv.DictReader(stream) if r.get("val/map")]
        table[path.parent.parent.name] = rows
    return table


def results(out: Path) -> dict[str, bytes]:
    return {
        path.parent.name: path.read_bytes() for path in sorted(out.glob("cells/*/scores_test.csv"))
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("reference")
    spec = write_spec(folder, SPEC)
    assert mlcbench("run", str(spec), "--out", str(folder / "out")).returncode == 0
    return folder / "out"


@pytest.mark.slow
def test_sigkill_at_random_moments_then_a_rerun_equals_an_uninterrupted_run(
    reference: Path, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out"
    rng = random.Random(7)
    resumed = False
    for _ in range(4):
        run = start("run", str(spec), "--out", str(out))
        # Kill once a cell is mid-training (its last checkpoint exists, its metrics do not),
        # a random moment later.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None:
            if any(
                not (ckpt.parent.parent / "metrics.json").exists()
                for ckpt in out.glob("cells/*/checkpoints/last.ckpt")
            ):
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        run.send_signal(signal.SIGKILL)
        output = run.communicate()[0]
        resumed |= "resuming from its last checkpoint" in output
    final = mlcbench("run", str(spec), "--out", str(out))
    assert final.returncode == 0, final.stdout + final.stderr
    resumed |= "resuming from its last checkpoint" in final.stdout
    assert resumed, "no run resumed a cell from its checkpoint; the test did not test resume"
    assert results(out) == results(reference)
    # A resumed cell kept the log rows of the epochs before its checkpoint.
    assert validation_log(out) == validation_log(reference)
    assert (out / "leaderboards" / "faults.md").read_bytes() == (
        reference / "leaderboards" / "faults.md"
    ).read_bytes()
    assert not list(out.rglob("*.tmp")), list(out.rglob("*.tmp"))
    assert not list(out.rglob("failure.json"))


@pytest.mark.slow
def test_a_crashing_or_diverging_cell_fails_alone_and_is_reported(tmp_path: Path) -> None:
    (tmp_path / "broken_plugins.py").write_text(textwrap.dedent(BROKEN_PLUGIN))
    dist = tmp_path / "broken_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mlcbench]\nbroken = broken_plugins\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    spec = write_spec(
        tmp_path,
        {
            **SPEC,
            "backbones": [*SPEC["backbones"], "segfaulter"],
            "losses": ["bce", "nan_loss"],
            "seeds": [0],
            "train": {**SPEC["train"], "epochs": 1},
        },
    )
    out = tmp_path / "out"
    first = mlcbench("run", str(spec), "--out", str(out), env=env)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "4 cells: 1 trained, 0 already complete, 3 failed" in first.stdout
    records = [json.loads(p.read_text()) for p in out.glob("cells/*/failure.json")]
    failures = [record["reason"] for record in records]
    assert sum("killed by SIGSEGV" in reason for reason in failures) == 2
    assert sum("NaN" in reason for reason in failures) == 1
    assert any("DivergedError" in record.get("traceback", "") for record in records)
    assert "Traceback" not in first.stdout + first.stderr  # details go to failure.json
    assert len(list(out.glob("cells/*/metrics.json"))) == 1
    assert (out / "leaderboards" / "faults.md").is_file()
    # A re-run reports the failures without retraining; --retry-failed runs them again.
    again = mlcbench("run", str(spec), "--out", str(out), env=env)
    assert again.returncode == 1
    assert again.stdout.count("failed in an earlier run") == 3
    assert "0 trained" in again.stdout
    retried = mlcbench("run", str(spec), "--out", str(out), "--retry-failed", env=env)
    assert retried.returncode == 1
    assert retried.stdout.count("FAILED") == 3


@pytest.mark.slow
def test_a_damaged_results_file_reruns_only_its_cell(reference: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out"
    assert mlcbench("run", str(spec), "--out", str(out)).returncode == 0
    victim = sorted(out.glob("cells/*/metrics.json"))[0]
    victim.write_text(victim.read_text()[:40])  # cut short, as by a disk that filled up
    rerun = mlcbench("run", str(spec), "--out", str(out))
    assert rerun.returncode == 0
    assert "1 trained, 3 already complete" in rerun.stdout
    assert json.loads(victim.read_text())["cell_id"] == victim.parent.name
    assert results(out) == results(reference)


@pytest.mark.slow
def test_two_runs_on_one_directory_never_train_the_same_cell(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out"
    runs = [start("run", str(spec), "--out", str(out)) for _ in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    trained = sum(output.count(": done in") for output in outputs)
    assert trained == 4, outputs
    assert len(list(out.glob("cells/*/metrics.json"))) == 4
