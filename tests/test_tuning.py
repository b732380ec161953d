"""``mlcbench tune``: the search space is checked before anything trains, a tiny study runs
end to end and resumes, the pruning callback prunes, and Optuna stays optional."""

from __future__ import annotations

import csv
import json
import shutil
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import torch
import yaml
from dataset_fixtures import TINY_SMALLCNN, tiny_negdigits

from mlcbench.cli import main
from mlcbench.errors import SpecError
from mlcbench.grid import expand
from mlcbench.plot import trials_svg
from mlcbench.plugin_manager import Plugins
from mlcbench.spec import parse_spec
from mlcbench.training import MONITOR
from mlcbench.tuning import INSTALL_HINT, plan_tuning, pruning_callback

SPACE = {
    "any_class.weight": {"low": 0.05, "high": 2.0, "log": True},
    "any_class.beta": {"low": 0.01, "high": 1.0, "log": True},
    "class_balance": {"choices": [False, 0.99, 0.9999]},
}
TINY: dict[str, Any] = {
    "name": "tiny",
    "datasets": [tiny_negdigits(192, 96)],
    "backbones": [TINY_SMALLCNN],
    "losses": ["bce", "focal+any_class"],
    "seeds": [0, 1],
    "train": {"epochs": 2, "batch_size": 32},
    "tune": {"space": SPACE, "pruner": {"startup_trials": 1, "warmup_epochs": 1}},
}


def write_spec(folder: Path, raw: dict[str, Any]) -> Path:
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def plan_error(raw: dict[str, Any], plugins: Plugins) -> str:
    with pytest.raises(SpecError) as caught:
        plan_tuning(parse_spec(raw), plugins)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- the spec


def test_a_tune_block_changes_no_cell_id(plugins: Plugins) -> None:
    without = {key: value for key, value in TINY.items() if key != "tune"}
    assert [cell.id for cell in expand(parse_spec(TINY), plugins)] == [
        cell.id for cell in expand(parse_spec(without), plugins)
    ]


def test_trials_train_on_one_device_whatever_run_uses(plugins: Plugins) -> None:
    """Pruning reports reach the study from this process only; devices are runtime keys, so
    the trial's cells keep the ids the spec gives them."""
    several = {**TINY, "train": {**TINY["train"], "devices": [2, 3], "strategy": "ddp"}}
    problem = plan_tuning(parse_spec(several), plugins)
    train = problem.spec.train
    assert (train.devices, train.strategy, train.num_nodes) == ([2], "auto", 1)
    spec_ids = {cell.id for cell in expand(parse_spec(several), plugins)}
    assert {cell.id for cell in expand(problem.spec, plugins)} <= spec_ids


def test_the_example_spec_plans_and_keeps_the_quickstart_cell_ids(plugins: Plugins) -> None:
    from conftest import QUICKSTART, REPO

    from mlcbench.spec import load_spec

    spec = load_spec(REPO / "benchmarks" / "quickstart_tune.yaml")
    problem = plan_tuning(spec, plugins)
    assert problem.names == ["any_class.weight", "any_class.beta", "class_balance"]
    assert dict(problem.kinds) == {
        "any_class.weight": "float",
        "any_class.beta": "float",
        "class_balance": "categorical",
    }
    quickstart = {cell.id for cell in expand(load_spec(QUICKSTART), plugins)}
    assert {cell.id for cell in expand(spec, plugins)} <= quickstart


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"any_class.wieght": {"low": 0.1, "high": 1.0}},
            "tune.space.any_class.wieght: unknown option 'wieght' — did you mean 'weight'? "
            "(known: beta, weight)",
        ),
        (
            {"any_class.beta": {"low": 0.01, "high": 2.0}},
            "tune.space.any_class.beta.high: any_class.beta: must lie in [0, 1], got 2.0",
        ),
        (
            {"focal.gamma": {"choices": [1.0, "two"]}},
            "tune.space.focal.gamma.choices[1]: expected a number, got 'two'",
        ),
    ],
)
def test_options_and_values_are_checked_against_the_loss_plugins(
    plugins: Plugins, space: dict[str, Any], message: str
) -> None:
    raw = {**TINY, "tune": {"space": space}}
    assert plan_error(raw, plugins) == f"<spec>: {message}"


def test_a_spec_without_tune_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(tmp_path, {key: value for key, value in TINY.items() if key != "tune"})
    assert main(["tune", str(path), "--trials", "1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"mlcbench: error: {path}: no 'tune:' block; add one")
    assert not (tmp_path / "out").exists()


def test_without_optuna_tune_says_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now raises ImportError
    path = write_spec(tmp_path, TINY)
    assert main(["tune", str(path), "--trials", "1", "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == f"mlcbench: error: {INSTALL_HINT}\n"
    assert "pip install 'mlcbench[tune]'" in INSTALL_HINT


# ---------------------------------------------------------------------------- pruning


class StubTrial:
    def __init__(self, prune: bool) -> None:
        self.prune = prune
        self.reported: list[tuple[float, int]] = []

    def report(self, value: float, step: int) -> None:
        self.reported.append((value, step))

    def should_prune(self) -> bool:
        return self.prune


def stub_trainer(epoch: int, value: float | None) -> Any:
    metrics = {} if value is None else {MONITOR: torch.tensor(value)}
    return SimpleNamespace(sanity_checking=False, callback_metrics=metrics, current_epoch=epoch)


def test_the_pruning_callback_reports_val_map_and_prunes_when_told() -> None:
    keep = StubTrial(prune=False)
    pruning_callback(keep).on_validation_end(stub_trainer(0, 0.5), None)
    assert keep.reported == [(0.5, 0)]

    stop = StubTrial(prune=True)
    # The second seed of a trial with 3 epochs per seed reports from step 3 on.
    with pytest.raises(optuna.TrialPruned, match="after epoch 2"):
        pruning_callback(stop, first_step=3).on_validation_end(stub_trainer(1, 0.25), None)
    assert stop.reported == [(0.25, 4)]


def test_the_pruning_callback_skips_epochs_without_a_val_map() -> None:
    trial = StubTrial(prune=True)
    pruning_callback(trial).on_validation_end(stub_trainer(0, None), None)
    assert trial.reported == []


# ------------------------------------------------------------------------- a tiny study


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tune")
    out = root / "out"
    path = write_spec(root, TINY)
    assert main(["tune", str(path), "--trials", "3", "--out", str(out), "--no-progress"]) == 0
    return out


def read_rows(out: Path) -> list[dict[str, str]]:
    with (out / "tune.csv").open(encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_a_study_writes_its_database_report_and_trial_folders(tiny_study: Path) -> None:
    out = tiny_study
    rows = read_rows(out)
    assert [row["trial"] for row in rows] == ["0", "1", "2"]
    assert {row["state"] for row in rows} <= {"complete", "pruned"}
    assert rows[0]["state"] == "complete"  # the pruner waits for one complete trial
    assert set(rows[0]) >= {"any_class.weight", "any_class.beta", "class_balance", "val_map"}
    for row in rows:
        assert 0.05 <= float(row["any_class.weight"]) <= 2.0
        assert row["class_balance"] in ("off", "0.99", "0.9999")
    assert (out / "study.db").is_file()
    ElementTree.fromstring((out / "tune.svg").read_text(encoding="utf-8"))
    assert not list(out.rglob("*.tmp"))
    # Every trial is a results folder of its own; checkpoints are not kept.
    for row in rows:
        folder = out / "trials" / row["trial"]
        assert (folder / "labels").is_dir()
        assert not list(folder.rglob("*.ckpt"))


def test_the_objective_is_the_best_val_map_of_the_trials_cells(tiny_study: Path) -> None:
    for row in read_rows(tiny_study):
        if row["state"] != "complete":
            continue
        cells = list((tiny_study / "trials" / row["trial"] / "cells").glob("*/metrics.json"))
        assert len(cells) == 1  # the tune seeds default to the spec's first seed
        metrics = json.loads(cells[0].read_text(encoding="utf-8"))
        assert metrics["cell"]["seed"] == 0
        assert float(row["val_map"]) == pytest.approx(metrics["training"]["best_val_map"])
        assert row["epochs"] == "2"


def test_the_report_bolds_the_best_trial_and_gives_its_loss_block(tiny_study: Path) -> None:
    rows = read_rows(tiny_study)
    complete = [row for row in rows if row["state"] == "complete"]
    best = max(complete, key=lambda row: float(row["val_map"]))
    report = (tiny_study / "tune.md").read_text(encoding="utf-8")
    table = [line for line in report.splitlines() if line.startswith("|")][2:]
    assert len(table) == 3
    bold = [line for line in table if "**" in line]
    assert len(bold) == 1 and bold[0].split("|")[1].strip() == f"**{best['trial']}**"
    assert "![Val mAP per trial](tune.svg)" in report
    block = report.split("```yaml\n")[1].split("```")[0]
    entry = yaml.safe_load(block)["losses"][0]
    assert entry["name"] == "focal+any_class"
    assert entry["any_class"]["weight"] == pytest.approx(float(best["any_class.weight"]), 1e-3)
    assert yaml.safe_load((tiny_study / "best.yaml").read_text(encoding="utf-8")) == {
        "losses": [entry]
    }
    # A tuned loss block is a valid loss of a spec.
    parse_spec({**TINY, "losses": [entry]})


def test_a_rerun_resumes_fails_a_stale_trial_and_adds_exactly_the_missing_ones(
    tiny_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny_study = shutil.copytree(tiny_study, tmp_path / "out")  # leave the shared study alone
    # A trial a killed run left RUNNING must not count, nor block the study.
    storage = f"sqlite:///{tiny_study / 'study.db'}"
    optuna.load_study(study_name="tiny", storage=storage).ask()
    path = write_spec(tiny_study.parent, TINY)
    capsys.readouterr()
    assert (
        main(["tune", str(path), "--trials", "4", "--out", str(tiny_study), "--no-progress"]) == 0
    )
    out = capsys.readouterr().out
    assert "trial 3: interrupted in an earlier run; marked failed" in out
    assert "[4/4] trial 4:" in out
    assert "Best: trial" in out
    rows = read_rows(tiny_study)
    assert [(row["trial"], row["state"]) for row in rows][3] == ("3", "failed")
    assert sum(row["state"] in ("complete", "pruned") for row in rows) == 4
    assert len(rows) == 5
    # Enough trials already: nothing trains, the report is rewritten.
    assert (
        main(["tune", str(path), "--trials", "2", "--out", str(tiny_study), "--no-progress"]) == 0
    )
    assert "0 trained in this run" in capsys.readouterr().out
    assert len(read_rows(tiny_study)) == 5


def test_a_study_refuses_a_different_search(
    tiny_study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = {**TINY, "tune": {"space": {"any_class.weight": {"low": 0.1, "high": 1.0}}}}
    folder = tiny_study.parent / "changed"
    folder.mkdir(exist_ok=True)
    path = write_spec(folder, changed)
    assert main(["tune", str(path), "--trials", "9", "--out", str(tiny_study)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "holds study 'tiny' of a different search" in err
    renamed = write_spec(folder, {**TINY, "name": "renamed"})
    assert main(["tune", str(renamed), "--trials", "9", "--out", str(tiny_study)]) == 1
    assert (
        f"{tiny_study / 'study.db'}: holds study 'tiny', not 'renamed'" in capsys.readouterr().err
    )


def test_two_studies_never_run_on_one_folder_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlcbench.cell_lock import cell_lock

    out = tmp_path / "out"
    with cell_lock(out / ".tune.lock") as held:  # as another mlcbench tune would
        assert held
        path = write_spec(tmp_path, TINY)
        assert main(["tune", str(path), "--trials", "1", "--out", str(out)]) == 1
    assert capsys.readouterr().err == (
        f"mlcbench: error: {out}: another 'mlcbench tune' is running on this folder; wait for "
        "it or pass another --out\n"
    )
    assert not (out / "study.db").exists()


def test_each_trial_trains_every_tune_seed_and_averages_them(tmp_path: Path) -> None:
    raw = {**TINY, "tune": {"space": SPACE, "seeds": [0, 1], "pruner": False}}
    out = tmp_path / "out"
    assert main(["tune", str(write_spec(tmp_path, raw)), "--trials", "1", "--out", str(out)]) == 0
    (row,) = read_rows(out)
    assert (row["state"], row["epochs"]) == ("complete", "4")  # 2 seeds × 2 epochs
    cells = sorted((out / "trials" / "0" / "cells").glob("*/metrics.json"))
    maps = [json.loads(path.read_text())["training"]["best_val_map"] for path in cells]
    assert len(maps) == 2
    assert float(row["val_map"]) == pytest.approx(sum(maps) / 2)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    assert sorted(study.trials[0].intermediate_values) == [0, 1, 2, 3]


def test_failing_trials_are_recorded_and_three_in_a_row_stop_the_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def diverge(*args: Any, **kwargs: Any) -> float:
        raise RuntimeError("boom")

    monkeypatch.setattr("mlcbench.tuning.train_trial", diverge)
    out = tmp_path / "out"
    assert main(["tune", str(write_spec(tmp_path, TINY)), "--trials", "5", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "[0/5] trial 0: " in captured.out and "→ FAILED: RuntimeError: boom" in captured.out
    assert captured.err == (
        "mlcbench: error: 3 trials in a row failed (last: trial 2: RuntimeError: boom); "
        f"see {out}/trials/2/failure.json\n"
    )
    assert [(row["state"], row["failure"]) for row in read_rows(out)] == [
        ("failed", "RuntimeError: boom")
    ] * 3
    failure = json.loads((out / "trials" / "2" / "failure.json").read_text())
    assert "RuntimeError: boom" in failure["traceback"]


def test_an_interrupted_trial_is_failed_and_the_study_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(*args: Any, **kwargs: Any) -> float:
        raise SystemExit(1)  # what Lightning makes of Ctrl-C

    monkeypatch.setattr("mlcbench.tuning.train_trial", interrupt)
    out = tmp_path / "out"
    assert (
        main(["tune", str(write_spec(tmp_path, TINY)), "--trials", "2", "--out", str(out)]) == 130
    )
    assert "interrupted" in capsys.readouterr().err
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    assert [(t.state.name, t.user_attrs["failure"]) for t in study.trials] == [
        ("FAIL", "interrupted")
    ]


# ------------------------------------------------------------------------------ the plot


def test_the_trials_plot_is_valid_svg_with_a_running_best() -> None:
    svg = trials_svg("t", [(0, 0.5, False), (1, 0.4, True), (2, 0.7, False)], "val mAP")
    root = ElementTree.fromstring(svg)
    namespace = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{namespace}polyline")) == 1
    assert len(root.findall(f"{namespace}circle")) == 3 + 2  # trials, then the legend
    ElementTree.fromstring(trials_svg("empty", [], "val mAP"))
