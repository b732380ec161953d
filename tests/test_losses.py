"""The composite loss of DESIGN §5: known answers, edge cases, dtypes, devices and shapes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from mlcbench.errors import SpecError
from mlcbench.losses import CompositeLoss, create_loss, effective_number_weights
from mlcbench.plugin_manager import Plugins

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
CASES_FILE = REFERENCE / "anyclass_loss_cases.json"
LOSS_NAMES = ["bce", "focal", "bce+any_class", "focal+any_class"]


def load_cases() -> list[dict[str, Any]]:
    if not CASES_FILE.is_file():
        return []
    cases = json.loads(CASES_FILE.read_text(encoding="utf-8"))["cases"]
    assert cases, f"{CASES_FILE} holds no cases"
    return cases


CASES = load_cases()


def case_id(case: dict[str, Any]) -> str:
    return f"{case['base']}-α{case['aux_weight']}-λ{case['aux_beta']}-β{case['class_balance_beta']}"


def case_spec(case: dict[str, Any]) -> dict[str, Any]:
    base = case["base"]
    spec: dict[str, Any] = {
        "name": f"{base}+any_class",
        "any_class": {"weight": case["aux_weight"], "beta": case["aux_beta"]},
        "class_balance": case["class_balance_beta"],
    }
    if base == "focal":
        spec[base] = {"gamma": case["gamma"]}
    return spec


@pytest.mark.skipif(not CASES, reason=f"known-answer cases not found at {CASES_FILE}")
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_known_answers(case: dict[str, Any], plugins: Plugins) -> None:
    counts = {"class_counts": case["class_counts"], "negative_count": case["negative_count"]}
    logits = torch.tensor(case["logits"], dtype=torch.float32)
    targets = torch.tensor(case["targets"], dtype=torch.float32)
    loss = create_loss(case_spec(case), plugins=plugins, **counts)
    assert loss(logits, targets).item() == pytest.approx(case["expected_loss"], rel=1e-4)
    if case["aux_weight"] == 0:
        base: dict[str, Any] = {"name": case["base"], "class_balance": case["class_balance_beta"]}
        if case["base"] == "focal":
            base["gamma"] = case["gamma"]
        plain = create_loss(base, plugins=plugins, **counts)
        assert plain(logits, targets).item() == pytest.approx(case["expected_loss"], rel=1e-4)


def test_the_reference_cases_cover_both_base_losses_and_the_baseline() -> None:
    if not CASES:
        pytest.skip(f"known-answer cases not found at {CASES_FILE}")
    assert {case["base"] for case in CASES} == {"bce", "focal"}
    assert any(case["aux_weight"] == 0 for case in CASES)


def formula_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    alpha: float,
    lam: float,
    class_weights: Tensor | None,
    negative_weight: float = 1.0,
) -> Tensor:
    """DESIGN §5 written out with BCE, in float64, one image at a time."""
    z, y = logits.double(), targets.double()
    total = torch.zeros((), dtype=torch.float64)
    for i in range(z.shape[0]):
        positive = bool(y[i].any())
        w = torch.ones_like(y[i])
        if positive:
            w[y[i] == 0] = lam
        s = (w * z[i]).sum() / w.sum()
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        per_image = bce(z[i], y[i], reduction="sum")
        per_image = per_image + alpha * bce(s, torch.tensor(float(positive), dtype=torch.float64))
        if class_weights is None:
            b = 1.0
        else:
            b = float((y[i] * class_weights.double()).sum()) if positive else negative_weight
        total = total + b * per_image
    negatives = (y.sum(dim=1) == 0).sum()
    return total / (y.sum() + negatives)


def random_batch(seed: int, batch: int = 9, classes: int = 4) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(batch, classes, generator=generator)
    targets = (torch.rand(batch, classes, generator=generator) > 0.6).float()
    targets[0] = 0  # at least one negative image
    targets[1, 0] = 1  # at least one positive image
    return logits, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_formula_without_class_balancing(seed: int, plugins: Plugins) -> None:
    logits, targets = random_batch(seed)
    spec = {
        "name": "bce+any_class",
        "any_class": {"weight": 0.7, "beta": 0.2},
        "class_balance": False,
    }
    loss = create_loss(spec, plugins=plugins)
    expected = formula_loss(logits, targets, alpha=0.7, lam=0.2, class_weights=None)
    assert loss(logits, targets).item() == pytest.approx(expected.item(), rel=1e-5)


def test_matches_the_formula_with_class_balancing(plugins: Plugins) -> None:
    logits, targets = random_batch(5)
    counts, negatives, beta = [10.0, 200.0, 3.0, 50.0], 400.0, 0.99
    loss = create_loss(
        {"name": "bce+any_class", "class_balance": beta},
        plugins=plugins,
        class_counts=counts,
        negative_count=negatives,
    )
    raw = [(1 - beta) / (1 - beta**n) for n in [*counts, negatives]]
    scaled = [v * len(raw) / sum(raw) for v in raw]
    expected = formula_loss(
        logits,
        targets,
        alpha=1.0,
        lam=0.1,  # the any_class defaults
        class_weights=torch.tensor(scaled[:-1]),
        negative_weight=scaled[-1],
    )
    assert loss(logits, targets).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_any_class_logit_is_the_normalised_weighted_geometric_mean(
    seed: int, plugins: Plugins
) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = 4 * torch.randn(16, 7, generator=generator, dtype=torch.float64)
    targets = (torch.rand(16, 7, generator=generator) > 0.7).double()
    targets[:3] = 0
    lam = 0.05 + 0.9 * torch.rand((), generator=generator).item()
    term = plugins.losses.get("any_class").factory(weight=1.0, beta=lam)
    # An element-wise "loss" that hands back its logit exposes s_i.
    any_logit = term(logits, targets, lambda z, y: z)
    assert any_logit.shape == (16,)

    p = torch.sigmoid(logits)
    w = torch.ones_like(targets)
    w[(targets == 0) & (targets.sum(dim=1, keepdim=True) > 0)] = lam
    share = w / w.sum(dim=1, keepdim=True)
    g_p = torch.exp((share * torch.log(p)).sum(dim=1))
    g_q = torch.exp((share * torch.log1p(-p)).sum(dim=1))
    expected = g_p / (g_p + g_q)
    torch.testing.assert_close(torch.sigmoid(any_logit), expected, rtol=1e-10, atol=1e-12)


def test_any_class_term_scales_with_its_weight(plugins: Plugins) -> None:
    logits, targets = random_batch(3)
    factory = plugins.losses.get("any_class").factory
    bce = plugins.losses.get("bce").factory()
    one = factory(weight=1.0, beta=0.1)(logits, targets, bce)
    half = factory(weight=0.5, beta=0.1)(logits, targets, bce)
    torch.testing.assert_close(half, one / 2)
    assert torch.all(factory(weight=0.0, beta=0.1)(logits, targets, bce) == 0)


def test_a_changed_term_weight_takes_effect_on_the_next_batch(plugins: Plugins) -> None:
    """The fused pass caches its column weights; a schedule that changes α must not be
    served a stale copy."""
    logits, targets = random_batch(4)
    counts = dict(class_counts=[5.0] * targets.shape[1], negative_count=20.0)
    loss = create_loss("focal+any_class", plugins=plugins, **counts)
    focal_alone = create_loss("focal", plugins=plugins, **counts)
    assert loss.fused
    loss(logits, targets)
    loss.auxiliaries[0].weight = 0.0
    torch.testing.assert_close(loss(logits, targets), focal_alone(logits, targets))


def edge_batches() -> dict[str, tuple[Tensor, Tensor]]:
    big = torch.tensor([[100.0, -100.0, 100.0], [-100.0, 100.0, -100.0]])
    return {
        "right at ±100": (big, (big > 0).float()),
        "wrong at ±100": (big, (big < 0).float()),
        "all negative": (torch.randn(5, 3), torch.zeros(5, 3)),
        "all negative at ±100": (big, torch.zeros(2, 3)),
        "all positive": (torch.randn(4, 3), torch.ones(4, 3)),
        "batch of one": (torch.randn(1, 3), torch.tensor([[0.0, 1.0, 0.0]])),
        "one class": (torch.randn(6, 1), torch.tensor([[1.0], [0], [0], [1], [0], [0]])),
        "one negative image": (torch.tensor([[-100.0, 100.0, 0.0]]), torch.zeros(1, 3)),
    }


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("balanced", [True, False], ids=["balanced", "unbalanced"])
@pytest.mark.parametrize("batch", list(edge_batches()))
def test_finite_loss_and_gradients_at_the_edges(
    name: str, balanced: bool, batch: str, plugins: Plugins
) -> None:
    logits, targets = edge_batches()[batch]
    classes = targets.shape[1]
    counts: dict[str, Any] = (
        {"class_counts": [5.0 * (j + 1) for j in range(classes)], "negative_count": 90.0}
        if balanced
        else {}
    )
    spec = {"name": name, "class_balance": 0.999 if balanced else False}
    loss = create_loss(spec, plugins=plugins, **counts)
    logits = logits.clone().requires_grad_(True)
    value = loss(logits, targets)
    value.backward()
    assert value.shape == ()
    assert torch.isfinite(value), value
    assert value >= 0
    assert logits.grad is not None and torch.isfinite(logits.grad).all(), logits.grad


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_focal_gradients_stay_finite_for_any_gamma(gamma: float, plugins: Plugins) -> None:
    logits = torch.tensor([[100.0, -100.0, 0.0], [-100.0, 100.0, 30.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    loss = create_loss(
        {"name": "focal+any_class", "focal": {"gamma": gamma}, "class_balance": False},
        plugins=plugins,
    )
    loss(logits, targets).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_focal_with_gamma_zero_is_bce(plugins: Plugins) -> None:
    logits, targets = random_batch(8)
    focal = create_loss({"name": "focal", "gamma": 0, "class_balance": False}, plugins=plugins)
    bce = create_loss({"name": "bce", "class_balance": False}, plugins=plugins)
    torch.testing.assert_close(focal(logits, targets), bce(logits, targets))


def test_perfect_predictions_cost_nothing(plugins: Plugins) -> None:
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logits = torch.where(targets == 1, 60.0, -60.0)
    loss = create_loss({"name": "focal+any_class", "class_balance": False}, plugins=plugins)
    assert loss(logits, targets).item() == pytest.approx(0.0, abs=1e-12)


def balanced_loss(plugins: Plugins, name: str = "focal+any_class") -> CompositeLoss:
    return create_loss(
        {"name": name, "class_balance": 0.99},
        plugins=plugins,
        class_counts=[10.0, 200.0, 3.0, 50.0],
        negative_count=400.0,
    )


def test_bf16_autocast_stays_close_to_float32(plugins: Plugins) -> None:
    logits, targets = random_batch(11, batch=32, classes=4)
    loss = balanced_loss(plugins)
    reference = loss(logits, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        same_input = loss(logits, targets)
        bf16_input = loss(logits.bfloat16(), targets)
    assert same_input.dtype == torch.float32
    # The loss computes in float32 even under autocast: no bf16 matmul inside.
    torch.testing.assert_close(same_input, reference, rtol=1e-5, atol=0)
    torch.testing.assert_close(
        bf16_input, loss(logits.bfloat16().float(), targets), rtol=1e-5, atol=0
    )
    torch.testing.assert_close(bf16_input, reference, rtol=2e-2, atol=0)


def test_class_weights_are_buffers_saved_with_the_module(plugins: Plugins) -> None:
    loss = balanced_loss(plugins)
    buffers = dict(loss.named_buffers())
    assert "image_class_weights" in buffers
    assert "negative_image_weight" in buffers
    state = loss.state_dict()
    torch.testing.assert_close(state["image_class_weights"], loss.image_class_weights)
    fresh = create_loss(
        {"name": "focal+any_class", "class_balance": 0.99},
        plugins=plugins,
        class_counts=[1.0, 1.0, 1.0, 1.0],
        negative_count=1.0,
    )
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.image_class_weights, loss.image_class_weights)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_buffers_move_with_to_and_the_loss_still_works(
    dtype: torch.dtype, plugins: Plugins
) -> None:
    logits, targets = random_batch(4)
    loss = balanced_loss(plugins)
    reference = loss(logits, targets)
    moved = loss.to(dtype)
    assert moved.image_class_weights.dtype == dtype
    assert moved.negative_image_weight.dtype == dtype
    value = moved(logits.to(dtype), targets.to(dtype))
    assert value.dtype == torch.promote_types(dtype, torch.float32)
    tolerance = 1e-6 if dtype == torch.float64 else 2e-2
    torch.testing.assert_close(value, reference.to(value.dtype), rtol=tolerance, atol=0)


def test_runs_on_the_meta_device_without_reading_values(plugins: Plugins) -> None:
    """Meta tensors hold no data: any host-device synchronisation would raise here."""
    logits, targets = random_batch(4)
    loss = balanced_loss(plugins).to("meta")
    assert loss.image_class_weights.device.type == "meta"
    value = loss(logits.to("meta"), targets.to("meta"))
    assert value.device.type == "meta"
    assert value.shape == ()


@pytest.mark.parametrize(
    ("counts", "negatives", "beta"),
    [
        ([10.0, 200.0, 3.0, 50.0], 400.0, 0.9999),
        ([10.0, 200.0, 3.0, 50.0], 400.0, 0.9),
        ([1.0], 1.0, 0.5),
        ([0.0, 5.0, 0.0], 10.0, 0.99),
        ([0.0, 0.0], 0.0, 0.99),
        ([7.0, 7.0, 7.0], 7.0, 0.0),
    ],
)
def test_class_weights_sum_to_classes_plus_one(
    counts: list[float], negatives: float, beta: float, plugins: Plugins
) -> None:
    loss = create_loss(
        {"name": "bce", "class_balance": beta},
        plugins=plugins,
        class_counts=counts,
        negative_count=negatives,
    )
    weights = torch.cat([loss.image_class_weights, loss.negative_image_weight.reshape(1)])
    assert weights.shape == (len(counts) + 1,)
    assert torch.isfinite(weights).all() and (weights > 0).all()
    assert weights.sum().item() == pytest.approx(len(counts) + 1, rel=1e-6)


def test_rarer_classes_weigh_more() -> None:
    weights = effective_number_weights(torch.tensor([10.0, 200.0, 3.0, 50.0, 400.0]), 0.999)
    order = torch.argsort(weights, descending=True).tolist()
    assert order == [2, 0, 3, 1, 4]
    expected = torch.tensor([(1 - 0.999) / (1 - 0.999**n) for n in [10, 200, 3, 50, 400]])
    torch.testing.assert_close(weights, expected * 5 / expected.sum())


def test_beta_zero_weighs_every_class_equally() -> None:
    torch.testing.assert_close(
        effective_number_weights(torch.tensor([1.0, 100.0, 5.0]), 0.0), torch.ones(3)
    )


@pytest.mark.parametrize(
    ("logits", "targets", "match"),
    [
        (torch.zeros(4), torch.zeros(4), r"same shape \(batch, classes\), got \(4,\) and \(4,\)"),
        (torch.zeros(2, 3), torch.zeros(2, 4), r"got \(2, 3\) and \(2, 4\)"),
        (torch.zeros(2, 3), torch.zeros(3, 2), r"got \(2, 3\) and \(3, 2\)"),
        (torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), r"got \(2, 3, 1\) and \(2, 3, 1\)"),
        (torch.zeros(0, 3), torch.zeros(0, 3), r"empty batch \(0, 3\)"),
        (torch.zeros(2, 0), torch.zeros(2, 0), r"empty batch \(2, 0\)"),
    ],
)
def test_wrong_shapes_raise_spec_errors(
    logits: Tensor, targets: Tensor, match: str, plugins: Plugins
) -> None:
    loss = create_loss({"name": "bce+any_class", "class_balance": False}, plugins=plugins)
    with pytest.raises(SpecError, match=match):
        loss(logits, targets)


def test_a_balanced_loss_rejects_another_number_of_classes(plugins: Plugins) -> None:
    loss = balanced_loss(plugins)  # four classes
    with pytest.raises(SpecError, match="built for 4 classes, called with 3"):
        loss(torch.zeros(2, 3), torch.zeros(2, 3))


def test_class_balancing_needs_counts(plugins: Plugins) -> None:
    with pytest.raises(SpecError, match=r"class balancing needs class_counts and negative_count"):
        create_loss("focal+any_class", plugins=plugins)
    with pytest.raises(SpecError, match="class counts must not be negative"):
        create_loss("bce", plugins=plugins, class_counts=[1.0, -1.0], negative_count=3.0)


def test_create_loss_checks_the_spec_like_the_grid(plugins: Plugins) -> None:
    with pytest.raises(SpecError, match=r"^loss: unknown loss 'focall' — did you mean 'focal'\?"):
        create_loss("focall", plugins=plugins)
    with pytest.raises(SpecError, match=r"^loss: 'any_class' is an auxiliary loss"):
        create_loss("any_class+bce", plugins=plugins)
    with pytest.raises(SpecError, match=r"^loss\.focal: unknown option 'gama' — did you mean"):
        create_loss({"name": "focal", "gama": 1, "class_balance": False}, plugins=plugins)
    with pytest.raises(SpecError, match=r"focal\.gamma: must be ≥ 0"):
        create_loss({"name": "focal", "gamma": -1, "class_balance": False}, plugins=plugins)


def test_create_loss_builds_the_parts_with_their_options(plugins: Plugins) -> None:
    loss = create_loss(
        {
            "name": "focal+any_class",
            "focal": {"gamma": 1.5, "alpha": 0.25},
            "any_class": {"weight": 0.3, "beta": 0.04},
            "class_balance": False,
            "label": "mine",
        },
        plugins=plugins,
    )
    assert loss.name == "mine"
    assert loss.class_balance is None
    assert (loss.base.gamma, loss.base.alpha) == (1.5, 0.25)  # type: ignore[union-attr]
    (term,) = loss.auxiliaries
    assert (term.weight, term.beta) == (0.3, 0.04)


def test_loss_is_a_mean_over_labels_and_negative_images(plugins: Plugins) -> None:
    """Doubling a batch (same images twice) leaves the normalised loss unchanged."""
    logits, targets = random_batch(6)
    loss = balanced_loss(plugins, "bce+any_class")
    once = loss(logits, targets)
    twice = loss(torch.cat([logits, logits]), torch.cat([targets, targets]))
    torch.testing.assert_close(once, twice)
    assert math.isfinite(once.item())
