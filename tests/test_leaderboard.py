"""Leaderboards from fixed results: numbers, formatting, escaping, determinism, safety."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mlcbench.errors import MlcbenchError, SpecError
from mlcbench.leaderboard import write_leaderboard

POLICIES = ("threshold_0.5", "val_tuned_f1", "val_tuned_f2")


def fake_cell(run: Path, cell_id: str, backbone: str, loss: str, seed: int, value: float) -> None:
    block = {
        "map": value,
        "macro_f1": value / 2,
        "macro_f2": value / 3,
        "f1_neg": 0.9,
        "neg_false_alarm_rate": 1 - value,
    }
    metrics = {
        "cell_id": cell_id,
        "cell": {
            "dataset": "toy",
            "dataset_key": "abc123",
            "backbone": backbone,
            "loss": loss,
            "seed": seed,
        },
        "training": {"accelerator": "cpu", "precision": "32-true"},
        "config": {"versions": {"mlcbench": "0.1.0"}, "loss": {"parts": [[loss, {}]]}},
        "test": {policy: block for policy in POLICIES},
    }
    folder = run / "cells" / cell_id
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))


def fake_submission(
    run: Path,
    name: str,
    seed: int,
    value: float,
    *,
    backbone: str = "",
    loss: str = "",
    **about: str,
) -> None:
    """A submission's metrics.json as ``mlcbench submit`` writes it (test blocks only)."""
    block = {
        "map": value,
        "macro_f1": value / 2,
        "macro_f2": value / 3,
        "f1_neg": 0.95,
        "neg_false_alarm_rate": 1 - value,
    }
    record = {
        "name": name,
        "backbone": backbone,
        "loss": loss,
        "seed": seed,
        "description": about.get("description", ""),
        "url": about.get("url", ""),
        "dataset": "toy",
        "dataset_key": "abc123",
        "submitted_at": 1750000000.0,
    }
    folder = run / "submissions" / name / f"seed-{seed}"
    folder.mkdir(parents=True)
    metrics = {"submission": record, "test": {policy: block for policy in POLICIES}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    fake_cell(run, "c1", "net", "bce", 0, 0.50)
    fake_cell(run, "c2", "net", "bce", 1, 0.60)
    fake_cell(run, "c3", "net", "focal|<b>x</b>", 0, 0.80)
    labels = run / "labels" / "abc123"
    labels.mkdir(parents=True)
    manifest = {
        "splits": {
            "test": {
                "images": 10,
                "negatives": 6,
                "class_counts": {"a": 4},
                "skipped": 2,
                "note": "test labels are not public; this split is a copy of val",
            }
        }
    }
    (labels / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_rows_hold_seed_means_and_sample_std_in_percent(run: Path, tmp_path: Path) -> None:
    board = write_leaderboard("toy", [run], tmp_path / "out").read_text()
    bce_rows = [line for line in board.splitlines() if "| bce " in line]
    assert len(bce_rows) == 2  # one per threshold table
    assert "55.00 ± 7.07" in bce_rows[0]  # mAP of 0.5 and 0.6
    assert re.search(r"\|\s*2\s*\|$", bce_rows[0])  # seeds
    assert re.search(r"\|\s*test\s*\|\s*10\s*\|\s*6\s*\|\s*60.0%\s*\|\s*1\s*\|\s*2", board)
    assert "- test: test labels are not public; this split is a copy of val" in board


def test_a_dataset_with_class_weights_gets_a_ciw_f2_column(run: Path, tmp_path: Path) -> None:
    """Sewer-ML ranks by CIW-F2: where every run scored it, it stands beside F2."""
    without = write_leaderboard("toy", [run], tmp_path / "plain").read_text()
    assert "CIW-F2" not in without
    for path in run.glob("cells/*/metrics.json"):
        metrics = json.loads(path.read_text())
        for block in metrics["test"].values():
            block["ciw_f2"] = block["map"] / 4
        path.write_text(json.dumps(metrics))
    board = write_leaderboard("toy", [run], tmp_path / "out").read_text()
    header = next(line for line in board.splitlines() if line.startswith("| Backbone"))
    titles = [cell.strip() for cell in header.strip("|").split("|")]
    assert titles[titles.index("F2") + 1] == "CIW-F2"
    bce = next(line for line in board.splitlines() if "| bce " in line)
    assert "13.75 ± 1.77" in bce  # (0.5 + 0.6) / 2 / 4, in percent
    csv_text = (tmp_path / "out" / "toy.csv").read_text()
    assert ",ciw_f2," in csv_text


def test_best_value_per_column_is_bold_and_lower_is_better_for_false_alarms(
    run: Path, tmp_path: Path
) -> None:
    board = write_leaderboard("toy", [run], tmp_path / "out").read_text()
    escaped = next(line for line in board.splitlines() if "focal" in line)
    assert "**80.00**" in escaped  # best mAP
    assert "**20.00**" in escaped  # fewest negative false alarms


def test_names_from_plugins_are_escaped_for_markdown(run: Path, tmp_path: Path) -> None:
    board = write_leaderboard("toy", [run], tmp_path / "out").read_text()
    assert "focal\\|&lt;b&gt;x&lt;/b&gt;" in board
    assert "<b>" not in board


def test_the_same_results_give_the_same_bytes_and_a_csv_of_every_number(
    run: Path, tmp_path: Path
) -> None:
    first = write_leaderboard("toy", [run], tmp_path / "a")
    second = write_leaderboard("toy", [run], tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    table = first.with_suffix(".csv").read_text().splitlines()
    assert table[0] == (
        "dataset,dataset_key,backbone,loss,policy,metric,mean,std,seeds,ci_low,ci_high,p_value,"
        "submission"
    )
    assert "toy,abc123,net,bce,threshold_0.5,map,0.55,0.07071067812,2,,,," in table


def test_a_name_cannot_point_outside_the_output_folder(run: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="may hold only letters"):
        write_leaderboard("../escape", [run], tmp_path / "out")
    assert not (tmp_path / "escape.md").exists()


def test_missing_or_empty_results_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(MlcbenchError, match="no such results directory"):
        write_leaderboard("toy", [tmp_path / "absent"], tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MlcbenchError, match="no finished cells"):
        write_leaderboard("toy", [tmp_path / "empty"], tmp_path)


def test_submissions_are_rows_named_in_their_own_column_and_ranked_with_the_cells(
    run: Path, tmp_path: Path
) -> None:
    fake_submission(run, "acme", 0, 0.90, backbone="Res|Net", loss="asl", description="<i>x</i>")
    fake_submission(run, "acme", 1, 0.70, backbone="Res|Net", loss="asl", url="https://a.b/?c&d")
    fake_submission(run, "plain", 0, 0.10)
    board = write_leaderboard("toy", [run], tmp_path / "out").read_text()
    header = next(line for line in board.splitlines() if line.startswith("| Backbone"))
    assert header.split("|")[1:4] == [
        " Backbone   ",
        " Loss                        ",
        " Submission   ",
    ]
    lines = board.splitlines()
    acme = next(line for line in lines if "| acme " in line)
    assert acme.startswith("| Res\\|Net ") and "**80.00 ± 14.14**" in acme  # best mAP: ranked
    assert re.search(r"\|\s*2\s*\|$", acme)  # two seeds, averaged
    plain = next(line for line in lines if "| plain " in line)
    assert plain.startswith("| —") and "| —  " in plain  # no backbone or loss given
    cell = next(line for line in lines if "| bce " in line)
    assert "**" not in cell.split("|")[5]  # a cell's mAP is no longer the best
    assert (
        "- acme (2 seeds, submitted 2025-06-15 UTC): &lt;i&gt;x&lt;/i&gt; — https://a.b/?c&amp;d"
        in board
    )
    assert "<i>" not in board
    assert "3 cells, 2 seeds" in board  # the provenance counts cells only
    table = (tmp_path / "out" / "toy.csv").read_text().splitlines()
    assert "toy,abc123,Res|Net,asl,threshold_0.5,map,0.8,0.1414213562,2,,,,acme" in table
    assert "toy,abc123,,,threshold_0.5,map,0.1,,1,,,,plain" in table
    index = (tmp_path / "out" / "README.md").read_text()
    assert re.search(r"\[toy\]\(toy.md\)\s*\|\s*toy\s*\|\s*4", index)  # 2 + 2 rows


def test_a_dataset_with_submissions_only_still_gets_its_section(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fake_submission(run, "lonely", 0, 0.5, backbone="net", loss="bce")
    board = write_leaderboard("toy", [run], tmp_path / "out").read_text()
    assert "## toy" in board and "(dataset manifest missing)" in board
    assert board.count("| lonely ") == 2  # both threshold tables
    assert "Provenance" not in board and "- lonely (1 seed" in board


def test_gains_table_pairs_each_loss_with_its_auxiliary_version(tmp_path: Path) -> None:
    import numpy as np

    from mlcbench.scores import write_table

    rng = np.random.default_rng(0)
    labels = ((rng.random((300, 3)) < 0.2) & (rng.random((300, 1)) < 0.4)).astype(np.int64)
    ids = [f"i{k}" for k in range(300)]
    run = tmp_path / "run"
    write_table(run / "labels" / "abc123" / "test.csv", ids, ["a", "b", "c"], labels)
    for seed in (0, 1):
        for loss, strength in (("bce", 0.1), ("bce+any_class", 0.6)):
            cell_id = f"{loss}-{seed}".replace("+", "_")
            fake_cell(run, cell_id, "net", loss, seed, 0.5)
            path = run / "cells" / cell_id / "metrics.json"
            metrics = json.loads(path.read_text())
            parts = [["bce", {}]] + ([["any_class", {"weight": 1.0}]] if "+" in loss else [])
            metrics["config"]["loss"] = {"parts": parts, "class_balance": 0.9999}
            path.write_text(json.dumps(metrics))
            scores = np.clip(strength * labels + 0.5 * rng.random(labels.shape), 0, 1)
            write_table(path.parent / "scores_test.csv", ids, ["a", "b", "c"], scores)
    # A submission that names the same backbone and loss never pairs: it has no loss config.
    fake_submission(run, "outside", 0, 0.5, backbone="net", loss="bce+any_class")
    board = write_leaderboard("toy", [run], tmp_path / "out").read_text()
    gains_section = board.split("### Gains of the auxiliary term")[1].split("Provenance")[0]
    assert "outside" not in gains_section and gains_section.count("| net ") == 1
    assert "### Gains of the auxiliary term" in board
    row = next(line for line in board.splitlines() if "| bce " in line and "bce+any_class" in line)
    assert row.count("✱") == 4  # the stronger scores win on every metric
    assert row.rstrip().endswith("2 |") or re.search(r"\|\s*2\s*\|$", row)
    gains = [
        line
        for line in (tmp_path / "out" / "toy.csv").read_text().splitlines()
        if "gain over bce" in line
    ]
    assert len(gains) == 4
    assert "![Gains with 95% intervals](toy_gains.svg)" in board
    svg = (tmp_path / "out" / "toy_gains.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<circle") == 4


def test_reference_rows_are_shown_labelled_and_never_ranked(run: Path, tmp_path: Path) -> None:
    published = [
        {
            "dataset": "toy",
            "backbone": "TResNet-L",
            "loss": "bce",
            "metrics": {"macro_f1": 99.5, "map": 42.52},
            "source": "the paper, Table 2",
            "split": "val",
            "threshold": 0.5,
        }
    ]
    (run / "reference.json").write_text(json.dumps(published))
    board = write_leaderboard("toy", [run], tmp_path / "out").read_text()
    assert "Reference rows — published numbers, not measured here and not ranked" in board
    assert "the paper, Table 2 (val split, threshold 0.5)" in board
    row = next(line for line in board.splitlines() if "TResNet-L" in line)
    assert "99.50" in row and "42.52" in row and "**" not in row
    assert board.count("TResNet-L") == 1  # only under the threshold-0.5 table
    measured = next(line for line in board.splitlines() if "focal" in line)
    assert "**80.00**" in measured  # still the best measured mAP, the 99.5 does not count


def test_an_index_lists_every_leaderboard_in_the_folder(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_leaderboard("toy", [run], out)
    write_leaderboard("other", [run], out)
    index = (out / "README.md").read_text()
    assert "[toy](toy.md)" in index and "[other](other.md)" in index
    assert re.search(r"\[toy\]\(toy.md\)\s*\|\s*toy\s*\|\s*2", index)  # 2 ranked rows


def test_provenance_names_versions_commit_hardware_and_date(run: Path, tmp_path: Path) -> None:
    board = write_leaderboard("toy", [run], tmp_path / "out").read_text()
    assert "Provenance: mlcbench 0.1.0; project commit" in board
    assert "3 cells, 2 seeds" in board


GOLDEN = Path(__file__).parent / "golden" / "leaderboard_toy.md"
GOLDEN_SUBMITTED = Path(__file__).parent / "golden" / "leaderboard_toy_submitted.md"


def test_a_leaderboard_from_fixed_results_matches_the_golden_file(
    run: Path, tmp_path: Path
) -> None:
    """Any change to a leaderboard's text shows up here; regenerate the golden file on
    purpose with MLCBENCH_REGENERATE_GOLDEN=1 and review its diff."""
    import os

    board = write_leaderboard("toy", [run], tmp_path / "out").read_text()
    if os.environ.get("MLCBENCH_REGENERATE_GOLDEN"):
        GOLDEN.write_text(board, encoding="utf-8")
    assert board == GOLDEN.read_text(encoding="utf-8")


def test_a_leaderboard_with_a_submission_matches_its_golden_file(run: Path, tmp_path: Path) -> None:
    """The same results plus one outside submission (regenerate as above)."""
    import os

    fake_submission(run, "acme", 0, 0.70, backbone="ResNet-50", loss="asl", url="https://a.b")
    board = write_leaderboard("toy", [run], tmp_path / "out").read_text()
    if os.environ.get("MLCBENCH_REGENERATE_GOLDEN"):
        GOLDEN_SUBMITTED.write_text(board, encoding="utf-8")
    assert board == GOLDEN_SUBMITTED.read_text(encoding="utf-8")
