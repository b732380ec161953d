"""The loss conformance kit: every registered loss passes it, and broken losses do not."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import mlcbench
from mlcbench.errors import PluginError, SpecError
from mlcbench.plugin_manager import Plugins, Provider, default_plugins, load_plugins
from mlcbench.testing import LOSS_CHECKS, check_loss, loss_conformance_test

#: Contract tests parametrised over the registry: a newly installed loss is checked too.
REGISTERED_LOSSES = default_plugins().losses.names()

# The one-line form a third party writes, run here on built-ins (with and without options).
test_focal_conformance = loss_conformance_test("focal")
test_any_class_conformance = loss_conformance_test(
    "any_class", options={"weight": 0.5, "beta": 0.05}
)


@pytest.mark.parametrize("name", REGISTERED_LOSSES)
def test_every_registered_loss_conforms(name: str, plugins: Plugins) -> None:
    check_loss(name, plugins=plugins)


@pytest.mark.parametrize("check", list(LOSS_CHECKS))
def test_each_check_runs_on_its_own(check: str, plugins: Plugins) -> None:
    LOSS_CHECKS[check]("bce", plugins, None)
    assert LOSS_CHECKS[check].__doc__


def test_the_checks_cover_the_contract() -> None:
    assert set(LOSS_CHECKS) == {
        "finite_scalar",
        "module_contract",
        "all_negative_batch",
        "all_positive_batch",
        "extreme_logits",
        "batch_of_one",
        "single_class",
        "batch_order_invariance",
        "bfloat16_autocast",
        "composition",
        "shape_errors",
        "non_binary_targets",
    }


def test_the_one_line_form_is_a_parametrised_pytest_test() -> None:
    test = loss_conformance_test("bce")
    (mark,) = [mark for mark in getattr(test, "pytestmark", []) if mark.name == "parametrize"]
    assert mark.args == ("check", list(LOSS_CHECKS))
    test("finite_scalar")  # a plain call runs one check


def test_options_reach_the_loss(plugins: Plugins) -> None:
    check_loss("focal", plugins=plugins, options={"gamma": 0.5, "alpha": 0.25})
    # Options a factory rejects are the caller's mistake, not a broken loss.
    with pytest.raises(SpecError, match="gamma"):
        check_loss("focal", plugins=plugins, options={"gamma": -1.0})


def test_an_unknown_loss_is_named_with_a_suggestion(plugins: Plugins) -> None:
    with pytest.raises(PluginError, match="did you mean 'focal'"):
        check_loss("focall", plugins=plugins)


def test_importing_the_kit_does_not_need_pytest() -> None:
    code = "import sys, mlcbench.testing; assert 'pytest' not in sys.modules, 'pytest imported'"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


# Deliberately broken losses, each breaking one property the kit must catch.


class Elementwise(nn.Module):
    """A base loss built from a function of (logits, targets, element-wise BCE)."""

    def __init__(self, function: Callable[[Tensor, Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        self.function = function

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        return self.function(logits, targets, bce)


class PerImage(nn.Module):
    """An auxiliary term built from a function of (logits, targets, elementwise)."""

    def __init__(self, function: Callable[..., Tensor]) -> None:
        super().__init__()
        self.function = function

    def forward(self, logits: Tensor, targets: Tensor, elementwise: Any) -> Tensor:
        return self.function(logits, targets, elementwise)


BROKEN_BASE = {
    # Divides by the number of positives: 0/0 on a batch without labels.
    "nan_on_negatives": lambda z, y, bce: bce * y.sum() / y.sum(),
    # Weights images by their place in the batch.
    "order_dependent": lambda z, y, bce: bce * torch.linspace(0.5, 1.5, len(z))[:, None],
    # Normalises per class over the batch: order-invariant, but not element-wise.
    "per_class_normalised": lambda z, y, bce: bce / bce.mean(dim=0, keepdim=True),
    # Reduces to a scalar instead of returning the element-wise loss.
    "reduced": lambda z, y, bce: bce.mean(),
    # Logs a probability computed in a way that underflows for saturated logits.
    "naive_log": lambda z, y, bce: (
        -(y * torch.log(torch.sigmoid(z)) + (1 - y) * torch.log(1 - torch.sigmoid(z)))
    ),
}

BROKEN_AUXILIARY = {
    # (B, 1) instead of (B,): the core would silently broadcast it to (B, B).
    "column_term": lambda z, y, ell: ell(z.mean(dim=1, keepdim=True), y.amax(dim=1, keepdim=True)),
    # squeeze() instead of squeeze(1): right for a batch, a 0-d tensor for a batch of one.
    "squeezed_term": lambda z, y, ell: ell(
        z.mean(dim=1, keepdim=True), y.amax(dim=1, keepdim=True)
    ).squeeze(),
    # Mixes images: each image's term depends on the batch's mean logit.
    "batch_mean_term": lambda z, y, ell: ell(
        z.mean().expand(len(z), 1), y.amax(dim=1, keepdim=True)
    ).squeeze(1),
}


def broken_plugin() -> types.ModuleType:
    def register_losses(register: Any) -> None:
        for name, function in BROKEN_BASE.items():
            register(name, lambda function=function: Elementwise(function), role="base")
        for name, function in BROKEN_AUXILIARY.items():
            register(name, lambda function=function: PerImage(function), role="auxiliary")

    module = types.ModuleType("mlcbench_broken_losses")
    module.mlcbench_register_losses = mlcbench.hookimpl(register_losses)  # type: ignore[attr-defined]
    return module


@pytest.fixture(scope="module")
def broken() -> Plugins:
    loaded = load_plugins([(broken_plugin(), Provider("broken", "broken-losses", "0.0.1"))])
    assert loaded.failures == []
    return loaded


@pytest.mark.parametrize(
    ("name", "failed_checks"),
    [
        ("nan_on_negatives", ["all_negative_batch", "batch_of_one"]),
        ("order_dependent", ["batch_order_invariance"]),
        ("per_class_normalised", ["module_contract"]),
        ("reduced", ["finite_scalar", "module_contract", "composition"]),
        ("naive_log", ["extreme_logits"]),
        ("column_term", ["module_contract"]),
        ("squeezed_term", ["module_contract"]),
        ("batch_mean_term", ["module_contract"]),
    ],
)
def test_the_kit_catches_a_broken_loss(
    name: str, failed_checks: list[str], broken: Plugins
) -> None:
    with pytest.raises(AssertionError) as caught:
        check_loss(name, plugins=broken)
    message = str(caught.value)
    assert message.startswith(f"loss {name!r} fails ")
    for check in failed_checks:
        assert f"loss {name!r} fails {check!r}" in message, message
        with pytest.raises(AssertionError, match=f"loss '{name}' fails '{check}'"):
            LOSS_CHECKS[check](name, broken, None)


def test_a_failure_names_the_composition_and_the_cause(broken: Plugins) -> None:
    with pytest.raises(AssertionError) as caught:
        LOSS_CHECKS["all_negative_batch"]("nan_on_negatives", broken, None)
    assert str(caught.value) == (
        "loss 'nan_on_negatives' fails 'all_negative_batch' (finite with finite gradients "
        "when no image has a label): as 'nan_on_negatives', the loss is nan"
    )
    with pytest.raises(AssertionError, match="as 'bce\\+column_term', an auxiliary term must"):
        LOSS_CHECKS["module_contract"]("column_term", broken, None)


def test_the_built_ins_still_pass_next_to_broken_ones(broken: Plugins) -> None:
    check_loss("focal", plugins=broken)
