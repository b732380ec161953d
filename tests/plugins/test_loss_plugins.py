"""The built-in loss plugins: formulas, closed-form gradients, extreme logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mlcbench_plugins.losses.any_class import any_class
from mlcbench_plugins.losses.asl import asl
from mlcbench_plugins.losses.bce import bce
from mlcbench_plugins.losses.focal import focal

import mlcbench
from mlcbench.errors import SpecError


def batch(seed: int = 0, rows: int = 32, classes: int = 6, scale: float = 4.0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, classes, generator=generator, dtype=torch.float64) * scale
    positive_image = torch.rand(rows, 1, generator=generator) < 0.4
    targets = ((torch.rand(rows, classes, generator=generator) < 0.3) & positive_image).double()
    return logits, targets


def direct_focal(logits, targets, gamma, alpha=None):
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = -((1 - p_t) ** gamma) * torch.log(p_t)
    if alpha is not None:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def direct_asl(logits, targets, gamma_neg, gamma_pos, clip):
    p = torch.sigmoid(logits)
    p_m = (p - clip).clamp(min=0) if clip > 0 else p
    positive = (1 - p) ** gamma_pos * torch.log(p)
    negative = p_m**gamma_neg * torch.log(1 - p_m)
    return -(targets * positive + (1 - targets) * negative)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_matches_its_formula_and_its_closed_form_gradient(gamma, alpha):
    logits, targets = batch()
    module = focal(gamma=gamma, alpha=alpha)
    torch.testing.assert_close(module(logits, targets), direct_focal(logits, targets, gamma, alpha))
    leaf = logits.clone().requires_grad_()
    module(leaf, targets).sum().backward()
    values, gradient = module.value_and_grad(logits, targets)
    torch.testing.assert_close(values, direct_focal(logits, targets, gamma, alpha))
    torch.testing.assert_close(gradient, leaf.grad)


def test_bce_closed_form_gradient_is_sigmoid_minus_target():
    logits, targets = batch(1)
    values, gradient = bce().value_and_grad(logits, targets)
    torch.testing.assert_close(
        values, F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    )
    torch.testing.assert_close(gradient, torch.sigmoid(logits) - targets)


@pytest.mark.parametrize(
    ("gamma_neg", "gamma_pos", "clip"), [(4.0, 0.0, 0.05), (2.0, 1.0, 0.0), (0.5, 0.0, 0.1)]
)
def test_asl_matches_its_formula(gamma_neg, gamma_pos, clip):
    logits, targets = batch(2, scale=2.0)
    module = asl(gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip)
    torch.testing.assert_close(
        module(logits, targets), direct_asl(logits, targets, gamma_neg, gamma_pos, clip)
    )


def test_asl_clip_discards_easy_negatives_entirely():
    module = asl(clip=0.05)
    logits = torch.tensor([[-5.0, -2.0]])  # p = 0.0067 and 0.119
    values = module(logits, torch.zeros(1, 2))
    assert values[0, 0] == 0 and values[0, 1] > 0


@pytest.mark.parametrize(
    "factory", [bce, focal, asl, lambda: focal(gamma=0.5), lambda: asl(gamma_neg=0.5)]
)
def test_extreme_logits_give_finite_values_and_gradients(factory):
    logits = torch.tensor([[100.0, -100.0, 0.0, 30.0], [-30.0, 100.0, -100.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0]])
    leaf = logits.clone().requires_grad_()
    values = factory()(leaf, targets)
    values.sum().backward()
    assert torch.isfinite(values).all() and torch.isfinite(leaf.grad).all()
    # Confident mistakes cost about |z|; confident hits cost nearly nothing.
    if factory is bce:
        assert values[1, 2].item() == pytest.approx(100.0, rel=1e-6)
        assert values[0, 0] < 1e-30


def test_any_class_derive_and_accumulate_match_autograd_of_its_forward():
    logits, targets = batch(3)
    term = any_class(weight=0.7, beta=0.05)
    base = focal()
    leaf = logits.clone().requires_grad_()
    per_image = term(leaf, targets, base)
    per_image.sum().backward()
    any_logit, any_target, jacobian = term.derive(logits, targets)
    values, derivative = base.value_and_grad(any_logit, any_target)
    gradient = term.accumulate(derivative, jacobian, torch.zeros_like(logits))
    torch.testing.assert_close((term.column_weight * values).squeeze(1), per_image.detach())
    torch.testing.assert_close(gradient, leaf.grad)
    assert torch.equal(any_target.squeeze(1), targets.amax(dim=1))


@pytest.mark.parametrize("name", ["bce+any_class", "focal+any_class", "focal", "bce"])
@pytest.mark.parametrize("balance", [0.9999, False])
def test_fused_batch_loss_equals_the_autograd_composition(name, balance):
    logits, targets = batch(4, rows=64, classes=9)
    spec = {"name": name, "class_balance": balance}
    counts = dict(class_counts=[float(c) for c in range(10, 19)], negative_count=500.0)
    fused = mlcbench.create_loss(spec, **counts).double()
    plain = mlcbench.create_loss(spec, **counts).double()
    plain._fused = False
    assert fused.fused
    results = []
    for loss in (fused, plain):
        leaf = logits.clone().requires_grad_()
        value = loss(leaf, targets)
        value.backward()
        results.append((value.detach(), leaf.grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def test_asl_composes_with_any_class_through_autograd():
    logits, targets = batch(5)
    loss = mlcbench.create_loss("asl+any_class", class_counts=[5.0] * 6, negative_count=20.0)
    assert not loss.fused
    leaf = logits.float().requires_grad_()
    loss(leaf, targets.float()).backward()
    assert torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "focal", "gamma": -1}, "focal.gamma: must be ≥ 0"),
        ({"name": "focal", "alpha": 2}, "focal.alpha: must lie in \\[0, 1\\]"),
        ({"name": "asl", "clip": 1.0}, "asl.clip: must lie in \\[0, 1\\)"),
        ({"name": "asl", "gamma_neg": -2}, "asl.gamma_neg: must be ≥ 0"),
        ({"name": "bce+any_class", "any_class": {"beta": 1.5}}, "any_class.beta: must lie in"),
        ({"name": "bce+any_class", "any_class": {"weight": -1}}, "any_class.weight: must be ≥ 0"),
        ({"name": "focal", "gama": 1}, "unknown option 'gama' — did you mean 'gamma'"),
        ({"name": "asl", "clip": "big"}, "asl.clip: expected a number, got 'big'"),
    ],
)
def test_bad_loss_options_fail_in_one_line_naming_loss_and_option(spec, message):
    with pytest.raises(SpecError, match=message) as error:
        mlcbench.create_loss(spec, class_counts=[1.0], negative_count=1.0)
    assert "\n" not in str(error.value)


def test_non_binary_targets_fail_naming_the_loss():
    loss = mlcbench.create_loss("focal+any_class", class_counts=[3.0, 4.0], negative_count=9.0)
    with pytest.raises(SpecError, match="'focal\\+any_class': targets must be 0 or 1"):
        loss(torch.zeros(2, 2), torch.tensor([[0.0, 0.5], [1.0, 0.0]]))
