"""Score and label files: the standard layout, exact round trips, sidecars, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlcbench.errors import MlcbenchError
from mlcbench.files import atomic_write_bytes, atomic_write_text, sha256_file
from mlcbench.scores import read_table, write_scores, write_table


def test_float32_scores_round_trip_exactly_so_rankings_and_ties_survive(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((500, 3)).astype(np.float32)
    scores[:10, 0] = scores[10:20, 0]  # ties
    scores[20, 1] = np.nextafter(scores[21, 1], np.float32(1))  # neighbours one ulp apart
    path = tmp_path / "scores.csv"
    write_table(path, [f"img{k}" for k in range(500)], ["a", "b", "c"], scores)
    ids, classes, values = read_table(path)
    assert ids[:2] == ["img0", "img1"] and classes == ["a", "b", "c"]
    assert np.array_equal(values.astype(np.float32), scores)
    assert np.array_equal(
        np.argsort(values, axis=0, kind="stable"), np.argsort(scores, axis=0, kind="stable")
    )


def test_labels_are_written_as_integers_in_the_same_layout(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    write_table(path, ["x", "007"], ["cat", "dog"], np.array([[1, 0], [0, 0]], dtype=np.int64))
    assert path.read_text().splitlines() == ["image_id,cat,dog", "x,1,0", "007,0,0"]
    assert read_table(path)[0] == ["x", "007"]  # ids stay strings


def test_sidecar_names_the_labels_hash_classes_and_config(tmp_path: Path) -> None:
    labels = tmp_path / "val.csv"
    write_table(labels, ["a"], ["c1"], np.array([[1]]))
    scores = tmp_path / "scores_val.csv"
    write_scores(
        scores,
        ["a"],
        ["c1"],
        np.array([[0.25]], dtype=np.float32),
        dataset="toy",
        split="val",
        labels_path=labels,
        config={"seed": 3},
    )
    sidecar = json.loads(scores.with_suffix(".json").read_text())
    assert sidecar["labels_sha256"] == sha256_file(labels)
    assert sidecar["class_names"] == ["c1"] and sidecar["config"] == {"seed": 3}
    assert sidecar["dataset"] == "toy" and sidecar["split"] == "val"


def test_shape_mismatch_and_missing_files_fail_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(MlcbenchError, match="for 2 images"):
        write_table(tmp_path / "s.csv", ["a", "b"], ["c"], np.zeros((3, 1)))
    with pytest.raises(MlcbenchError, match="no such file"):
        read_table(tmp_path / "absent.csv")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    atomic_write_text(path, "old")

    with pytest.raises(TypeError):
        atomic_write_bytes(path, 42)  # type: ignore[arg-type]  # fails mid-write
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
