"""Weights & Biases logging, in offline mode, read back from what wandb wrote."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dataset_fixtures import TINY_SMALLCNN, tiny_negdigits

SPEC = {
    "name": "logged",
    "datasets": [tiny_negdigits(96, 48)],
    "backbones": [TINY_SMALLCNN],
    "losses": ["bce+any_class"],
    "seeds": [3],
    "train": {"epochs": 1, "batch_size": 32},
}
BLOCK = 32768
HEADER = 7


def wandb_records(path: Path) -> list[object]:
    """The protobuf records of a .wandb file (wandb's LevelDB-style log)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    position, records, pending = HEADER, [], b""
    while position < len(data):
        if BLOCK - position % BLOCK < HEADER:
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        chunk = data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def run(tmp_path: Path, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    command = [sys.executable, "-m", "mlcbench", "run", str(spec), "--out", str(tmp_path / "out")]
    return subprocess.run(
        [*command, "--no-progress", *extra], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.mark.slow
def test_each_cell_logs_config_group_tags_and_final_metrics(tmp_path: Path) -> None:
    secret = "secret-token-do-not-write-0123456789"
    env = {**os.environ, "WANDB_API_KEY": secret, "WANDB_SILENT": "true"}
    result = run(tmp_path, "--wandb", "mlcbench-tests", "--wandb-mode", "offline", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    (metrics_path,) = (tmp_path / "out").glob("cells/*/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    (log,) = metrics_path.parent.glob("wandb/offline-run-*/*.wandb")
    records = wandb_records(log)
    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run_record.run_group == "logged"
    assert list(run_record.tags) == [
        "dataset:negdigits",
        "backbone:smallcnn",
        "loss:bce+any_class",
        "seed:3",
    ]
    config = {item.key: json.loads(item.value_json) for item in run_record.config.update}
    assert config["cell_id"] == metrics["cell_id"]
    assert config["loss"]["name"] == "bce+any_class"
    summary = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            summary.update(
                {item.key: json.loads(item.value_json) for item in record.summary.update}
            )
    assert summary["test/threshold_0.5/map"] == pytest.approx(
        metrics["test"]["threshold_0.5"]["map"]
    )
    # No credential ends up in any file of the run.
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_a_wandb_that_cannot_start_only_warns(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["WANDB_DIR"] = str(tmp_path / "wandb-home")
    env["HOME"] = str(tmp_path)  # no stored login
    result = run(tmp_path, "--wandb", "mlcbench-tests", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Weights & Biases could not start" in result.stderr
    assert len(list((tmp_path / "out").glob("cells/*/metrics.json"))) == 1
