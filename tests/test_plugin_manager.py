"""Plugin discovery through real entry points: a throw-away distribution on sys.path."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import mlcbench
from mlcbench import hookspecs
from mlcbench.losses import create_loss
from mlcbench.plugin_manager import (
    LoadFailure,
    PluginEntry,
    Plugins,
    Provider,
    default_plugins,
    load_plugins,
)

BUILT_INS = {
    "datasets": ["chestxray14", "coco", "csv", "negdigits", "sewerml"],
    "backbones": ["smallcnn", "timm/*", "torchvision/*"],
    "losses": ["any_class", "asl", "bce", "focal"],
}

TOY_PLUGIN = '''
"""A third-party loss plugin, as someone outside mlcbench would write it."""
import torch.nn.functional as F
from torch import nn

import mlcbench


class ToyBCE(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, logits, targets):
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return self.scale * loss


def toy_bce(*, scale: float = 1.0) -> nn.Module:
    """Toy binary cross-entropy from a third-party distribution."""
    return ToyBCE(scale)


@mlcbench.hookimpl
def mlcbench_register_losses(register):
    register("toy_bce", toy_bce, role="base")
'''


@pytest.fixture
def distributions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Install throw-away distributions into ``tmp_path`` (a real sys.path entry)."""
    modules: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))
    was_cached = default_plugins.cache_info().currsize > 0

    def install(
        module: str, source: str, *, dist: str, version: str, entry_points: dict[str, str]
    ) -> Path:
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[mlcbench]\n{lines}", encoding="utf-8")
        modules.append(module)
        importlib.invalidate_caches()
        return tmp_path

    yield install
    for module in modules:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()
    if not was_cached:  # a cache filled while the toy distributions were installed
        default_plugins.cache_clear()


def install_toy(distributions: Callable[..., Path]) -> Path:
    return distributions(
        "mlcbench_toyplugin",
        TOY_PLUGIN,
        dist="mlcbench-toyplugin",
        version="0.3.1",
        entry_points={"toy": "mlcbench_toyplugin"},
    )


def test_built_ins_arrive_through_entry_points(plugins: Plugins) -> None:
    assert plugins.datasets.names() == BUILT_INS["datasets"]
    assert plugins.backbones.names() == BUILT_INS["backbones"]
    assert plugins.losses.names() == BUILT_INS["losses"]
    assert plugins.failures == []
    for registry in (plugins.datasets, plugins.backbones, plugins.losses):
        for _, entry in registry:
            assert entry.provider.distribution == "mlcbench"
            assert entry.provider.version == mlcbench.__version__
            assert entry.summary, f"{entry.name}: its factory needs a docstring"
    assert plugins.losses.get("bce").role == "base"
    assert plugins.losses.get("focal").role == "base"
    assert plugins.losses.get("any_class").role == "auxiliary"
    assert plugins.losses.get("bce").provider.plugin == "bce"
    assert plugins.backbones.get("timm/*").variants is not None
    assert plugins.distributions() == {"mlcbench": mlcbench.__version__}


def test_a_third_party_distribution_registers_a_loss(distributions: Callable[..., Path]) -> None:
    install_toy(distributions)
    plugins = load_plugins()
    assert plugins.failures == []
    entry = plugins.losses.get("toy_bce")
    assert entry.role == "base"
    assert entry.provider == Provider("toy", "mlcbench-toyplugin", "0.3.1")
    assert entry.summary == "Toy binary cross-entropy from a third-party distribution."
    assert plugins.distributions()["mlcbench-toyplugin"] == "0.3.1"
    # The built-ins are still there.
    assert set(BUILT_INS["losses"]) < set(plugins.losses.names())

    # The any-class term composes with the third-party base loss.
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=generator)
    targets = (torch.rand(6, 4, generator=generator) > 0.7).float()
    targets[0] = 0
    counts = {"class_counts": [5.0, 9.0, 2.0, 30.0], "negative_count": 50.0}
    toy = create_loss("toy_bce+any_class", plugins=plugins, **counts)
    bce = create_loss("bce+any_class", plugins=plugins, **counts)
    assert torch.allclose(toy(logits, targets), bce(logits, targets), rtol=1e-6)
    doubled = create_loss(
        {"name": "toy_bce+any_class", "toy_bce": {"scale": 2}}, plugins=plugins, **counts
    )
    assert torch.allclose(doubled(logits, targets), 2 * bce(logits, targets), rtol=1e-6)


def test_the_cli_lists_a_third_party_plugin(distributions: Callable[..., Path]) -> None:
    root = install_toy(distributions)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "mlcbench", "plugins"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if " toy_bce " in f"{line} "]
    assert line.split()[:5] == ["loss", "(base)", "toy_bce", "mlcbench-toyplugin", "0.3.1"]
    assert "bce" in result.stdout and "negdigits" in result.stdout
    assert "warning" not in result.stderr


def test_a_plugin_that_fails_to_import_is_reported(distributions: Callable[..., Path]) -> None:
    distributions(
        "mlcbench_brokenplugin",
        "import mlcbench\nraise RuntimeError('boom:\\n  second line')\n",
        dist="mlcbench-brokenplugin",
        version="2.0",
        entry_points={"broken": "mlcbench_brokenplugin", "ghost": "mlcbench_no_such_module"},
    )
    plugins = load_plugins()
    failures = {failure.provider.plugin: failure for failure in plugins.failures}
    assert set(failures) == {"broken", "ghost"}
    broken = failures["broken"]
    assert broken.provider == Provider("broken", "mlcbench-brokenplugin", "2.0")
    assert broken.error == "RuntimeError: boom: second line"
    assert broken.message() == (
        "plugin 'broken' from distribution mlcbench-brokenplugin 2.0 failed to load: "
        "RuntimeError: boom: second line"
    )
    assert failures["ghost"].error.startswith("ModuleNotFoundError: ")
    # Everything else still works.
    assert plugins.losses.names() == BUILT_INS["losses"]
    assert plugins.datasets.names() == BUILT_INS["datasets"]
    loss = create_loss({"name": "focal+any_class", "class_balance": False}, plugins=plugins)
    value = loss(torch.zeros(2, 3), torch.tensor([[1.0, 0, 0], [0, 0, 0]]))
    assert torch.isfinite(value)


def test_a_plugin_whose_hook_raises_is_reported(distributions: Callable[..., Path]) -> None:
    distributions(
        "mlcbench_raisingplugin",
        """
        import mlcbench

        @mlcbench.hookimpl
        def mlcbench_register_datasets(register):
            raise ValueError("no data here")
        """,
        dist="mlcbench-raisingplugin",
        version="1.0",
        entry_points={"raising": "mlcbench_raisingplugin"},
    )
    plugins = load_plugins()
    (failure,) = plugins.failures
    assert failure.provider == Provider("raising", "mlcbench-raisingplugin", "1.0")
    assert failure.error == "ValueError: no data here"
    assert "mlcbench-raisingplugin" not in plugins.distributions()


def test_a_duplicate_name_is_reported(distributions: Callable[..., Path]) -> None:
    distributions(
        "mlcbench_dupplugin",
        """
        import mlcbench
        from torch import nn

        def bce() -> nn.Module:
            '''A second bce.'''
            return nn.Identity()

        @mlcbench.hookimpl
        def mlcbench_register_losses(register):
            register("bce", bce, role="base")
        """,
        dist="mlcbench-dupplugin",
        version="1.0",
        entry_points={"zz_dup": "mlcbench_dupplugin"},
    )
    plugins = load_plugins()
    (failure,) = plugins.failures
    assert failure.provider == Provider("zz_dup", "mlcbench-dupplugin", "1.0")
    assert "Duplicate loss 'bce'" in failure.error
    assert "mlcbench-dupplugin" in failure.message()
    # The first registration stands.
    assert plugins.losses.get("bce").provider.distribution == "mlcbench"


def module_with(**hooks: Any) -> types.ModuleType:
    module = types.ModuleType("inline_plugin")
    for name, function in hooks.items():
        setattr(module, name, mlcbench.hookimpl(function))
    return module


def test_extra_plugin_objects_register_several_things() -> None:
    def datasets(register: Any) -> None:
        register("one", lambda: None)
        register("two", lambda: None)

    def backbones(register: Any) -> None:
        register("fam/*", lambda variant: None, variants=lambda: ["a", "b"])

    module = module_with(mlcbench_register_datasets=datasets, mlcbench_register_backbones=backbones)
    provider = Provider("inline", "inline-dist", "9.9")
    plugins = load_plugins([(module, provider)])
    assert plugins.failures == []
    assert {"one", "two", *BUILT_INS["datasets"]} == set(plugins.datasets.names())
    entry, variant = plugins.backbones.lookup("fam/a")
    assert variant == "a"
    assert entry.variants is not None and list(entry.variants()) == ["a", "b"]
    assert provider in plugins.providers


@pytest.mark.parametrize(
    ("hooks", "error"),
    [
        # A misspelt hook would otherwise be silently ignored.
        (
            {"mlcbench_register_loss": lambda register: None},
            "unknown hook 'mlcbench_register_loss'",
        ),
        # A hook whose arguments do not match the hookspec.
        ({"mlcbench_register_losses": lambda registry: None}, "PluginValidationError"),
        (
            {"mlcbench_register_losses": lambda register: register("x", lambda: None, role="main")},
            "PluginError: loss 'x': role must be 'base' or 'auxiliary', got 'main'",
        ),
        (
            {"mlcbench_register_datasets": lambda register: register("x", "not callable")},
            "PluginError: dataset 'x' was registered with a non-callable",
        ),
        (
            {"mlcbench_register_datasets": lambda register: register(" x", lambda: None)},
            "empty or padded",
        ),
    ],
)
def test_contract_violations_are_reported(hooks: dict[str, Any], error: str) -> None:
    provider = Provider("bad", "bad-dist", "0.1")
    plugins = load_plugins([(module_with(**hooks), provider)])
    (failure,) = plugins.failures
    assert failure.provider == provider
    assert error in failure.error
    assert "\n" not in failure.message()
    assert provider not in plugins.providers
    assert plugins.losses.names() == BUILT_INS["losses"]


def test_a_plugin_listed_twice_registers_once() -> None:
    module = module_with(mlcbench_register_datasets=lambda register: register("once", lambda: None))
    provider = Provider("twice", "twice-dist", "1")
    plugins = load_plugins([(module, provider), (module, provider)])
    assert plugins.failures == []
    assert "once" in plugins.datasets


def test_default_plugins_are_loaded_once() -> None:
    assert default_plugins() is default_plugins()


def test_load_failure_message_names_distribution_and_entry_point() -> None:
    failure = LoadFailure(Provider("ep", "some-dist", "1.2"), "ImportError: nope")
    assert failure.message() == (
        "plugin 'ep' from distribution some-dist 1.2 failed to load: ImportError: nope"
    )


def test_entry_summary_is_the_first_docstring_line() -> None:
    def factory() -> None:
        """First line.

        More.
        """

    provider = Provider("p", "d", "1")
    assert PluginEntry("x", factory, provider).summary == "First line."
    assert PluginEntry("x", lambda: None, provider).summary == ""


def test_every_hookspec_is_prefixed_typed_and_documented() -> None:
    specs = [
        (name, function)
        for name, function in vars(hookspecs).items()
        if callable(function) and hasattr(function, f"{hookspecs.PROJECT}_spec")
    ]
    assert {name for name, _ in specs} == {
        "mlcbench_register_datasets",
        "mlcbench_register_backbones",
        "mlcbench_register_losses",
    }
    for name, function in specs:
        assert name.startswith("mlcbench_")
        assert (function.__doc__ or "").strip(), name
        signature = inspect.signature(function)
        assert list(signature.parameters) == ["register"], name
        assert signature.parameters["register"].annotation != inspect.Parameter.empty, name
        assert signature.return_annotation in (None, "None"), name


def test_blocking_a_plugin_leaves_it_out_and_lists_it() -> None:
    from mlcbench.plugin_manager import PluginSelection

    plugins = load_plugins(selection=PluginSelection(block=("any_class",)))
    assert "any_class" not in plugins.losses
    assert "bce" in plugins.losses
    assert [p.plugin for p in plugins.blocked] == ["any_class"]


def test_autoload_off_loads_only_the_named_distributions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlcbench.plugin_manager import PluginSelection

    monkeypatch.setenv("MLCBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    nothing = load_plugins(selection=PluginSelection.from_options([]))
    assert len(nothing.losses) == 0 and len(nothing.blocked) >= 7
    named = load_plugins(selection=PluginSelection.from_options(["MLCBench"]))
    assert "focal" in named.losses and not named.blocked


def test_cli_p_options_reach_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from mlcbench.cli import main
    from mlcbench.plugin_manager import PluginSelection, select_plugins

    try:
        assert main(["-p", "no:focal", "plugins"]) == 0
        out = capsys.readouterr().out
        assert "blocked: plugin 'focal' from mlcbench" in out
        assert " focal " not in out.split("blocked:")[0]
    finally:
        select_plugins(PluginSelection())
