"""Many cells on a local Ray instance: concurrent, and the same results as a local run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dataset_fixtures import TINY_SMALLCNN, tiny_negdigits

pytest.importorskip("ray", reason="the Ray executor is an optional extra: mlcbench[ray]")

SPEC = {
    "name": "onray",
    # Enough images that each cell trains for seconds: longer than Ray takes to start a task.
    "datasets": [tiny_negdigits(1536, 64)],
    "backbones": [TINY_SMALLCNN],
    "losses": ["bce", "focal+any_class"],
    "seeds": [0],
    "train": {"epochs": 4, "batch_size": 32},
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    # One thread everywhere: a Ray task with one CPU runs torch on one thread, and float
    # reductions depend on the thread count, so the local run must match it to compare bytes.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    command = [sys.executable, "-m", "mlcbench", "run", *args, "--no-progress"]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_ray_runs_cells_concurrently_with_the_local_executors_results(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    local = run(str(spec), "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stdout + local.stderr
    on_ray = run(
        str(spec), "--out", str(tmp_path / "ray"), "--executor", "ray", "--cpus-per-cell", "1"
    )
    assert on_ray.returncode == 0, on_ray.stdout + on_ray.stderr
    assert on_ray.stdout.count("submitted to Ray") == 2
    for scores in sorted((tmp_path / "local").glob("cells/*/scores_*.csv")):
        twin = tmp_path / "ray" / scores.relative_to(tmp_path / "local")
        assert twin.read_bytes() == scores.read_bytes(), twin
    spans = []
    for path in (tmp_path / "ray").glob("cells/*/metrics.json"):
        training = json.loads(path.read_text())["training"]
        spans.append((training["started_at"], training["finished_at"]))
    (_, first_end), (second_start, _) = sorted(spans)
    assert second_start < first_end, "the two cells did not train at the same time"
    # Resume works the same: a second run finds everything complete.
    again = run(str(spec), "--out", str(tmp_path / "ray"), "--executor", "ray")
    assert again.returncode == 0 and "2 already complete" in again.stdout
