"""``mlcbench submit`` on a real tiny run: a cell's own scores, resubmitted, rank exactly as
the cell; every bad submission is one error line, exit 2, and leaves the run untouched."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from dataset_fixtures import TINY_SMALLCNN, tiny_negdigits

from mlcbench.cli import main
from mlcbench.files import sha256_file

TINY = {
    "name": "tiny",
    "datasets": [tiny_negdigits(96, 48)],
    "backbones": [TINY_SMALLCNN],
    "losses": ["bce"],
    "seeds": [0],
    "train": {"epochs": 1, "batch_size": 32, "warmup_epochs": 0.5},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trained cell: its results directory."""
    root = tmp_path_factory.mktemp("tiny")
    spec = root / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    out = root / "out"
    assert main(["run", str(spec), "--out", str(out), "--no-progress", "--in-process"]) == 0
    return out


@pytest.fixture
def runs(tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of the tiny run for one test to submit to."""
    copy = tmp_path / "runs"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    return copy


def the_cell(runs: Path) -> Path:
    (cell,) = (runs / "cells").iterdir()
    return cell


@pytest.fixture
def preds(runs: Path, tmp_path: Path) -> Path:
    """The cell's own score files and sidecars, as a model trained elsewhere would send them."""
    folder = tmp_path / "preds"
    folder.mkdir()
    for split in ("val", "test"):
        for suffix in ("csv", "json"):
            shutil.copy(the_cell(runs) / f"scores_{split}.{suffix}", folder)
    return folder


def submit(preds: Path, runs: Path, *extra: str) -> int:
    return main(["submit", str(preds), "--runs", str(runs), *extra])


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


def test_a_cells_own_scores_rank_with_exactly_the_cells_numbers(
    runs: Path, preds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert submit(preds, runs, "--name", "twin", "--backbone", "Same|Net", "--loss", "bce") == 0
    printed = capsys.readouterr().out
    assert "Submitted 'twin' seed 0 for negdigits" in printed
    assert f"mlcbench leaderboard {runs}" in printed

    folder = runs / "submissions" / "twin" / "seed-0"
    cell = json.loads((the_cell(runs) / "metrics.json").read_text())
    submitted = json.loads((folder / "metrics.json").read_text())
    assert submitted["val"] == cell["val"] and submitted["test"] == cell["test"]
    for split in ("val", "test"):
        original = the_cell(runs) / f"scores_{split}.csv"
        assert (folder / f"scores_{split}.csv").read_bytes() == original.read_bytes()
        sidecar = json.loads((folder / f"scores_{split}.json").read_text())
        labels = runs / "labels" / cell["cell"]["dataset_key"] / f"{split}.csv"
        assert sidecar["labels_sha256"] == sha256_file(labels)
        assert sidecar["config"]["trained_with"]["seed"] == 0  # the submitted sidecar's config

    assert main(["leaderboard", str(runs), "--name", "tiny", "--out", str(tmp_path / "b")]) == 0
    board = (tmp_path / "b" / "tiny.md").read_text()
    assert "| Submission " in board
    row = next(line for line in board.splitlines() if "| twin " in line)
    assert row.startswith("| Same\\|Net ")
    assert "- twin (1 seed, submitted " in board
    table = pd.read_csv(tmp_path / "b" / "tiny.csv", keep_default_na=False)
    rows = table[table["policy"].isin(["threshold_0.5", "tuned"])]
    measured = rows[rows["submission"] == ""].set_index(["policy", "metric"])["mean"]
    twin = rows[rows["submission"] == "twin"].set_index(["policy", "metric"])["mean"]
    assert len(twin) == len(measured) == 10
    assert twin.to_dict() == measured.to_dict()


def test_seeds_of_one_name_average_into_one_row_and_rebuilds_are_identical(
    runs: Path, preds: Path, tmp_path: Path
) -> None:
    assert submit(preds, runs, "--name", "acme", "--description", "two\n runs") == 0
    assert submit(preds, runs, "--name", "acme", "--seed", "1", "--url", "https://x.org") == 0
    first = tmp_path / "a"
    assert main(["leaderboard", str(runs), "--name", "t", "--out", str(first)]) == 0
    assert main(["leaderboard", str(runs), "--name", "t", "--out", str(tmp_path / "b")]) == 0
    board = (first / "t.md").read_text()
    assert board == (tmp_path / "b" / "t.md").read_text()
    row = next(line for line in board.splitlines() if "| acme " in line)
    assert row.rstrip().endswith("| 2       |") and row.startswith("| —")
    assert ": two runs — https://x.org" in board


def test_a_rerun_of_the_spec_ranks_the_submission_too(
    tiny_run: Path, runs: Path, preds: Path
) -> None:
    assert submit(preds, runs, "--name", "acme") == 0
    spec = tiny_run.parent / "tiny.yaml"
    assert main(["run", str(spec), "--out", str(runs), "--no-progress", "--in-process"]) == 0
    assert "| acme " in (runs / "leaderboards" / "tiny.md").read_text()


def test_class_weights_come_from_the_manifest_as_a_cells_do(runs: Path, preds: Path) -> None:
    (manifest_path,) = (runs / "labels").glob("*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["class_weights"] is None  # negdigits defines none
    manifest["class_weights"] = {f"digit_{d}": 1.0 + d for d in range(5)}
    manifest_path.write_text(json.dumps(manifest))
    assert submit(preds, runs, "--name", "weighted") == 0
    metrics = json.loads((runs / "submissions/weighted/seed-0/metrics.json").read_text())
    assert metrics["test"]["threshold_0.5"]["ciw_f2"] is not None
    cell = json.loads((the_cell(runs) / "metrics.json").read_text())
    assert "ciw_f2" not in cell["test"]["threshold_0.5"]


def test_force_replaces_a_submission(runs: Path, preds: Path) -> None:
    assert submit(preds, runs, "--name", "acme", "--loss", "old") == 0
    assert submit(preds, runs, "--name", "acme", "--loss", "new", "--force") == 0
    metrics = json.loads((runs / "submissions/acme/seed-0/metrics.json").read_text())
    assert metrics["submission"]["loss"] == "new"


def test_a_run_with_two_datasets_matches_by_classes_or_needs_dataset(
    runs: Path, preds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (key,) = [folder.name for folder in (runs / "labels").iterdir()]
    twin = runs / "labels" / "twin0000"
    shutil.copytree(runs / "labels" / key, twin)
    assert submit(preds, runs, "--name", "a") == 2
    error = capsys.readouterr().err
    assert "match more than one of the datasets" in error and "pass --dataset KEY" in error
    assert submit(preds, runs, "--name", "a", "--dataset", key) == 0

    for split in ("val", "test"):  # the second dataset now has other classes
        path = twin / f"{split}.csv"
        path.write_text(path.read_text().replace("digit_0", "cat", 1))
    assert submit(preds, runs, "--name", "b") == 0
    metrics = json.loads((runs / "submissions/b/seed-0/metrics.json").read_text())
    assert metrics["submission"]["dataset_key"] == key


# -------------------------------------------------------------------------- bad submissions


def rewrite(path: Path, change: Callable[[list[list[str]]], None]) -> None:
    with path.open(newline="") as stream:
        rows = list(csv.reader(stream))
    change(rows)
    with path.open("w", newline="") as stream:
        csv.writer(stream, lineterminator="\n").writerows(rows)


def rename_an_image(rows: list[list[str]]) -> None:
    rows[3][0] = "not_an_image"


def drop_an_image(rows: list[list[str]]) -> None:
    del rows[5]


def rename_a_class(rows: list[list[str]]) -> None:
    rows[0][-1] = "digit_9"


def swap_two_classes(rows: list[list[str]]) -> None:
    for row in rows:
        row[1], row[2] = row[2], row[1]


def swap_two_rows(rows: list[list[str]]) -> None:
    rows[1], rows[2] = rows[2], rows[1]


def value(text: str) -> Callable[[list[list[str]]], None]:
    def put(rows: list[list[str]]) -> None:
        rows[2][3] = text

    return put


def tamper_labels_hash(preds: Path) -> None:
    sidecar = preds / "scores_test.json"
    record = json.loads(sidecar.read_text())
    record["labels_sha256"] = "0" * 64
    sidecar.write_text(json.dumps(record))


BAD = {
    "missing file": (lambda p: (p / "scores_val.csv").unlink(), [], "scores_val.csv: no such file"),
    "unknown image id": (
        lambda p: rewrite(p / "scores_test.csv", rename_an_image),
        [],
        "1 image id is not in",
    ),
    "missing image id": (
        lambda p: rewrite(p / "scores_val.csv", drop_an_image),
        [],
        "val.csv is missing (e.g. val_",
    ),
    "wrong class column": (
        lambda p: rewrite(p / "scores_test.csv", rename_a_class),
        [],
        "is missing: digit_4",
    ),
    "class columns out of order": (
        lambda p: rewrite(p / "scores_test.csv", swap_two_classes),
        [],
        "write them as digit_0, digit_1",
    ),
    "rows out of order": (
        lambda p: rewrite(p / "scores_test.csv", swap_two_rows),
        [],
        "rows are in another order",
    ),
    "NaN probability": (
        lambda p: rewrite(p / "scores_test.csv", value("nan")),
        [],
        "1 score is missing or NaN",
    ),
    "infinite probability": (
        lambda p: rewrite(p / "scores_val.csv", value("inf")),
        [],
        "outside [0, 1]",
    ),
    "logit instead of probability": (
        lambda p: rewrite(p / "scores_test.csv", value("-2.5")),
        [],
        "write probabilities, not logits",
    ),
    "tampered labels hash": (tamper_labels_hash, [], "labels_sha256 000000000000… is not the"),
    "unsafe name": (lambda p: None, ["--name", "../up"], "--name '../up' may hold only"),
    "unknown dataset": (lambda p: None, ["--dataset", "coco"], "no dataset 'coco'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_submission_is_one_error_line_exit_2_and_writes_nothing(
    case: str, runs: Path, preds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spoil, extra, expected = BAD[case]
    spoil(preds)
    before = snapshot(runs)
    arguments = extra if "--name" in extra else ["--name", "acme", *extra]
    assert submit(preds, runs, *arguments) == 2
    error = capsys.readouterr().err
    assert error.startswith("mlcbench: error: ") and error.count("\n") == 1, error
    assert expected in error, error
    assert snapshot(runs) == before


def test_a_duplicate_name_or_another_model_under_it_is_refused(
    runs: Path, preds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert submit(preds, runs, "--name", "acme", "--backbone", "ResNet-50") == 0
    capsys.readouterr()
    before = snapshot(runs)
    for extra, expected in (
        (["--backbone", "ResNet-50"], "seed 0 exists; pass --force"),
        (["--seed", "1", "--backbone", "ViT"], "has backbone 'ResNet-50', this one 'ViT'"),
    ):
        assert submit(preds, runs, "--name", "acme", *extra) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and expected in error, error
    assert snapshot(runs) == before


def test_a_folder_that_is_no_run_is_refused(
    preds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert submit(preds, tmp_path / "empty", "--name", "a") == 2
    assert "no dataset labels" in capsys.readouterr().err
    assert submit(preds, tmp_path / "absent", "--name", "a") == 2
    assert "no such results directory" in capsys.readouterr().err
    assert not list((tmp_path / "empty").iterdir())


def test_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["submit", "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mlcbench submit")
    assert "mlcbench submit preds/ --runs runs/quickstart --name acme-net" in out
