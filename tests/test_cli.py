"""The command line: thin, one-line errors, dry runs and the plugin listing (no training)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlcbench import __version__
from mlcbench.cli import main
from mlcbench.errors import SpecError

CELL_LINE = re.compile(r"^[0-9a-f]{12}  negdigits  (\S+)  (\S+)  seed=(\d+)$")


def test_a_missing_spec_is_one_error_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.yaml"
    assert main(["run", str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"mlcbench: error: {missing}: no such spec file")
    assert "Traceback" not in err


def test_a_relative_missing_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "missing.yaml"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "mlcbench: error: missing.yaml: no such spec file; check the path (see benchmarks/*.yaml)\n"
    )


def test_a_spec_mistake_is_one_error_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "typo.yaml"
    spec.write_text(
        "name: typo\ndatasets: [negdigits]\nbackbones: [smallcnn]\nlosses: [bce, focall]\n",
        encoding="utf-8",
    )
    assert main(["run", str(spec), "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"mlcbench: error: {spec}: losses[1]: unknown loss 'focall' — did you mean 'focal'? "
        "(known: any_class, asl, bce, focal)\n"
    )


def test_debug_shows_the_exception(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such spec file"):
        main(["--debug", "run", str(tmp_path / "missing.yaml")])
    with pytest.raises(SpecError, match="no such spec file"):
        main(["run", str(tmp_path / "missing.yaml"), "--debug"])


def test_dry_run_lists_every_cell_of_the_quickstart(
    capsys: pytest.CaptureFixture[str], quickstart_path: Path, tmp_path: Path
) -> None:
    assert main(["run", str(quickstart_path), "--dry-run", "--out", str(tmp_path / "r")]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    cells = [CELL_LINE.match(line) for line in lines[:-1]]
    assert all(cells), lines
    assert len(cells) == 24
    assert lines[-1] == "24 cells"
    backbones = [m.group(1) for m in cells if m]
    assert backbones == ["smallcnn"] * 12 + ["timm/test_resnet"] * 12
    losses = [m.group(2) for m in cells if m]
    assert (
        losses
        == [loss for loss in ["bce", "bce+any_class", "focal", "focal+any_class"] for _ in range(3)]
        * 2
    )
    assert [int(m.group(3)) for m in cells if m] == [0, 1, 2] * 8
    assert len({line.split()[0] for line in lines[:-1]}) == 24
    assert not (tmp_path / "r").exists()  # a dry run writes nothing
    assert err == ""


def test_plugins_lists_the_built_ins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines()[2:]:
        words = line.split()
        name_at = 2 if words[0] == "loss" else 1  # "loss (base)" takes two words
        rows[words[name_at]] = line
        assert words[name_at + 1 : name_at + 3] == ["mlcbench", __version__], line
    for name in ["negdigits", "smallcnn", "timm/*", "torchvision/*", "bce", "focal", "any_class"]:
        assert name in rows, out
    assert rows["negdigits"].startswith("dataset")
    assert rows["smallcnn"].startswith("backbone")
    assert rows["bce"].startswith("loss (base)")
    assert rows["focal"].startswith("loss (base)")
    assert rows["any_class"].startswith("loss (auxiliary)")
    assert out.splitlines()[0].split() == ["Kind", "Name", "Distribution", "Version", "Description"]


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mlcbench")
    for command in COMMANDS:
        assert command in out
    assert "mlcbench run benchmarks/quickstart.yaml --dry-run" in out


COMMANDS = ["run", "plugins", "leaderboard", "data", "evaluate", "explain", "submit", "tune"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mlcbench {command}")
    assert "example" in out  # every command shows how it is called


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out.startswith("usage: mlcbench")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"mlcbench {__version__}"


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["train"])
    assert caught.value.code == 2
    assert "invalid choice: 'train'" in capsys.readouterr().err


def test_command_line_overrides_the_specs_executor_and_logging(minimal_raw) -> None:
    from mlcbench.cli import build_parser, run_options
    from mlcbench.spec import parse_spec

    spec = parse_spec(
        {
            **minimal_raw,
            "executor": {"name": "ray", "gpus_per_cell": 0.5},
            "logging": {"wandb": {"project": "p", "mode": "offline"}},
        }
    )
    plain = run_options(build_parser().parse_args(["run", "x.yaml"]), spec)
    assert (plain.executor, plain.gpus_per_cell, plain.wandb.project) == ("ray", 0.5, "p")
    args = build_parser().parse_args(
        ["run", "x.yaml", "--executor", "local", "--wandb", "q", "--wandb-mode", "disabled"]
    )
    overridden = run_options(args, spec)
    assert overridden.executor == "local"
    assert (overridden.wandb.project, overridden.wandb.mode) == ("q", "disabled")
