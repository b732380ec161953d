"""The example third-party package plugins/example-loss, installed for real with pip.

It is built and installed once into a temporary ``--target`` folder; subprocesses that put
that folder on PYTHONPATH then see it exactly as a user who ran ``pip install`` would.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

from mlcbench.errors import SpecError
from mlcbench.losses import create_loss
from mlcbench.plugin_manager import Plugins, Provider, load_plugins
from mlcbench.testing import check_loss

PACKAGE = Path(__file__).resolve().parents[1] / "plugins" / "example-loss"

TINY_SPEC = """\
name: poly1demo
datasets:
  - name: negdigits
    train_images: 96
    val_images: 48
    test_images: 48
    image_size: 24
    digits_per_image: 2
backbones:
  - {name: smallcnn, width: 8, depth: 2}
losses: [poly1, poly1+any_class]
seeds: 1
train: {epochs: 1, batch_size: 32}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding mlcbench-poly1 as pip installs it (pip runs once per module)."""
    root = tmp_path_factory.mktemp("poly1")
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the repository.
    source = shutil.copytree(PACKAGE, root / "source")
    target = root / "site"
    offline = ["--no-deps", "--no-build-isolation", "--no-index", "--quiet"]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", *offline, "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    assert (target / "mlcbench_poly1.py").is_file()
    return target


def run_python(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "WANDB_MODE": "offline",
    }
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=180,
        check=False,
    )


def test_the_cli_lists_the_installed_loss(site: Path, tmp_path: Path) -> None:
    result = run_python(site, "-m", "mlcbench", "plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if " poly1 " in f"{line} "]
    assert line.split()[:5] == ["loss", "(base)", "poly1", "mlcbench-poly1", "0.1.0"]
    assert "Poly-1 loss (Leng et al., 2022)" in line
    assert "failed to load" not in result.stdout + result.stderr


@pytest.mark.slow
def test_a_benchmark_runs_with_the_installed_loss(site: Path, tmp_path: Path) -> None:
    spec = tmp_path / "poly1demo.yaml"
    spec.write_text(TINY_SPEC, encoding="utf-8")
    out = tmp_path / "out"
    result = run_python(
        site, "-m", "mlcbench", "run", str(spec), "--out", str(out), "--no-progress", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    leaderboard = out / "leaderboards" / "poly1demo.md"
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in leaderboard.read_text(encoding="utf-8").splitlines()
        if line.startswith("| smallcnn")
    ]
    assert {"poly1", "poly1+any_class"} <= {row[1] for row in rows}, leaderboard.read_text()
    # The plugin's distribution and version are part of each cell's identity.
    configs = list((out / "cells").glob("*/config.json"))
    assert len(configs) == 2
    assert all('"mlcbench-poly1": "0.1.0"' in path.read_text() for path in configs)


def test_the_conformance_kit_passes_on_the_installed_loss(site: Path, tmp_path: Path) -> None:
    code = "from mlcbench.testing import check_loss; check_loss('poly1'); print('conforms')"
    result = run_python(site, "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "conforms"


# The formula, checked in this process against the package's source file.


@pytest.fixture(scope="module")
def poly1_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlcbench_poly1", PACKAGE / "mlcbench_poly1.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def with_poly1(poly1_module: ModuleType) -> Plugins:
    plugins = load_plugins([(poly1_module, Provider("poly1", "mlcbench-poly1", "0.1.0"))])
    assert plugins.failures == []
    return plugins


@pytest.mark.parametrize("epsilon", [-1.0, 0.0, 1.0, 2.5])
def test_the_formula_matches_a_direct_computation(epsilon: float, poly1_module: ModuleType) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = 4.0 * torch.randn(64, 5, generator=generator, dtype=torch.float64)
    targets = (torch.rand(64, 5, generator=generator) < 0.3).double()
    probability = torch.sigmoid(logits)
    p_true = targets * probability + (1 - targets) * (1 - probability)
    expected = -torch.log(p_true) + epsilon * (1 - p_true)
    actual = poly1_module.poly1(epsilon=epsilon)(logits, targets)
    assert actual.shape == logits.shape
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)


def test_epsilon_zero_is_bce_and_saturated_logits_stay_exact(poly1_module: ModuleType) -> None:
    logits = torch.tensor([[-100.0, -30.0, 0.0, 30.0, 100.0]])
    for targets in (torch.zeros_like(logits), torch.ones_like(logits)):
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        assert torch.equal(poly1_module.poly1(epsilon=0.0)(logits, targets), bce)
        # A confident mistake costs |z| + ε (p_t → 0); a confident hit costs ~0.
        loss = poly1_module.poly1(epsilon=1.0)(logits, targets)
        wrong = (logits > 0) != (targets > 0)
        torch.testing.assert_close(loss[wrong & (logits.abs() == 100)], torch.tensor([101.0]))
        assert torch.isfinite(loss).all() and (loss >= 0).all()


def test_options_come_from_the_spec(with_poly1: Plugins) -> None:
    logits = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 1, 1], [0, 0, 0]] * 2)
    poly = create_loss({"name": "poly1", "epsilon": 0, "class_balance": False}, plugins=with_poly1)
    bce = create_loss({"name": "bce", "class_balance": False}, plugins=with_poly1)
    torch.testing.assert_close(poly(logits, targets), bce(logits, targets))
    with pytest.raises(SpecError, match=r"poly1\.epsilon: must be a finite number ≥ -1"):
        create_loss({"name": "poly1", "epsilon": -1.5}, plugins=with_poly1)


def test_the_conformance_kit_passes_in_process(with_poly1: Plugins) -> None:
    check_loss("poly1", plugins=with_poly1)
    check_loss("poly1", plugins=with_poly1, options={"epsilon": -1.0})
