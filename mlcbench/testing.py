"""A conformance kit for loss plugins: check that a registered loss keeps the contract.

A loss author adds one line to a test file::

    from mlcbench.testing import loss_conformance_test

    test_my_loss = loss_conformance_test("my_loss")

and pytest runs every check in :data:`LOSS_CHECKS` as its own test. Outside pytest,
:func:`check_loss` runs them all and raises one :class:`AssertionError` that names the loss
and every property it broke.

A *base* loss is checked alone and composed with ``any_class``; an *auxiliary* term is
checked composed with ``bce``. Class balancing is on throughout, with plausible class counts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mlcbench.errors import SpecError
from mlcbench.losses import CompositeLoss, create_loss
from mlcbench.plugin_manager import Plugins, default_plugins

__all__ = ["LOSS_CHECKS", "LossCheck", "check_loss", "loss_conformance_test"]

#: One named check: ``check(name, plugins, options)`` raises AssertionError on a violation.
LossCheck = Callable[[str, Plugins | None, Mapping[str, Any] | None], None]

#: Per-class training counts the checks build losses with (cycled for more classes): a
#: long tail, as in real multi-label data, so class balancing weights differ visibly.
_CLASS_COUNTS = (120.0, 40.0, 300.0, 7.0, 55.0)
_NEGATIVE_COUNT = 900.0
_BATCH_SIZE = 16
_NUM_CLASSES = 5
#: Relative tolerance for results that must not change (batch order, a zero-weight term).
_EXACT_RTOL = 1e-5
#: Relative tolerance between a bfloat16-autocast run and a float32 one.
_BFLOAT16_RTOL = 1e-2


@dataclass(frozen=True)
class _Subject:
    """One composition under test: ``poly1`` alone, ``poly1+any_class`` or ``bce+my_term``."""

    name: str
    label: str
    spec: dict[str, Any]
    plugins: Plugins

    def build(self, num_classes: int = _NUM_CLASSES, **extra: Any) -> CompositeLoss:
        """The composite loss, class-balanced with plausible counts for ``num_classes``."""
        spec = {**self.spec, **extra}
        counts = [_CLASS_COUNTS[j % len(_CLASS_COUNTS)] for j in range(num_classes)]
        return create_loss(
            spec, class_counts=counts, negative_count=_NEGATIVE_COUNT, plugins=self.plugins
        )

    def fail(self, what: str) -> AssertionError:
        return AssertionError(f"as {self.label!r}, {what}")


def _subjects(name: str, plugins: Plugins, options: Mapping[str, Any] | None) -> list[_Subject]:
    """The compositions a loss is checked in, by its role."""
    entry = plugins.losses.get(name)
    own = {name: dict(options or {})}
    names = [f"bce+{name}"] if entry.role == "auxiliary" else [name, f"{name}+any_class"]
    return [_Subject(name, label, {"name": label, **own}, plugins) for label in names]


def _batch(
    batch_size: int = _BATCH_SIZE, num_classes: int = _NUM_CLASSES, *, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Random logits and 0/1 targets with both negative and positive images."""
    generator = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(batch_size, num_classes, generator=generator)
    targets = (torch.rand(batch_size, num_classes, generator=generator) < 0.3).float()
    if batch_size > 1:
        targets[0] = 0.0  # a negative image
        targets[1, 0] = 1.0  # a positive one
    return logits, targets


def _evaluate(
    subject: _Subject,
    loss: CompositeLoss,
    logits: Tensor,
    targets: Tensor,
    *,
    autocast: torch.dtype | None = None,
) -> Tensor:
    """The loss value, after checking it is a finite scalar with finite gradients.

    With ``autocast``, the forward pass runs under ``torch.autocast("cpu", dtype=autocast)``
    (the backward pass outside it, as PyTorch recommends).
    """
    logits = logits.detach().clone().requires_grad_(True)
    context = (
        torch.autocast("cpu", dtype=autocast) if autocast is not None else contextlib.nullcontext()
    )
    try:
        with context:
            value = loss(logits, targets)
    except Exception as error:
        raise subject.fail(f"raised {type(error).__name__}: {error}") from error
    if not isinstance(value, Tensor) or value.ndim != 0:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise subject.fail(f"expected a scalar tensor, got {shape}")
    if not torch.isfinite(value):
        raise subject.fail(f"the loss is {value.item()}")
    try:
        value.backward()
    except Exception as error:
        raise subject.fail(f"backward raised {type(error).__name__}: {error}") from error
    gradient = logits.grad
    if gradient is None:
        raise subject.fail("no gradient reaches the logits")
    bad = int((~torch.isfinite(gradient)).sum())
    if bad:
        raise subject.fail(f"{bad} of {gradient.numel()} gradient values are not finite")
    return value.detach()


def _assert_close(
    subject: _Subject, what: str, actual: Tensor, expected: Tensor, rtol: float
) -> None:
    """Fail unless ``actual`` and ``expected`` are finite and agree within ``rtol``."""
    actual, expected = actual.detach().double(), expected.detach().double()
    if not (torch.isfinite(actual).all() and torch.isfinite(expected).all()):
        raise subject.fail(f"{what}: not all values are finite")
    if not torch.allclose(actual, expected, rtol=rtol, atol=rtol * 1e-3):
        difference = (actual - expected).abs().max().item()
        raise subject.fail(f"{what}: differ by {difference:.3g} (relative tolerance {rtol:g})")


_CheckBody = Callable[[_Subject], None]
LOSS_CHECKS: dict[str, LossCheck] = {}


def _loss_check(check_name: str) -> Callable[[_CheckBody], _CheckBody]:
    """Register ``body`` (run once per composition) in :data:`LOSS_CHECKS` as ``check_name``."""

    def decorate(body: _CheckBody) -> _CheckBody:
        property_ = (body.__doc__ or "").strip()

        def check(
            name: str, plugins: Plugins | None = None, options: Mapping[str, Any] | None = None
        ) -> None:
            for subject in _subjects(name, plugins or default_plugins(), options):
                try:
                    body(subject)
                except AssertionError as error:
                    raise AssertionError(
                        f"loss {name!r} fails {check_name!r} ({property_}): {error}"
                    ) from error

        check.__name__ = check.__qualname__ = f"check_{check_name}"
        check.__doc__ = f"Conformance check {check_name!r}: {property_}."
        LOSS_CHECKS[check_name] = check
        return body

    return decorate


@_loss_check("finite_scalar")
def _finite_scalar(subject: _Subject) -> None:
    """a finite scalar with finite gradients for random logits and targets"""
    _evaluate(subject, subject.build(), *_batch())


@_loss_check("module_contract")
def _module_contract(subject: _Subject) -> None:
    """base losses are element-wise, auxiliary terms per-image"""
    loss = subject.build()
    logits, targets = _batch()
    if subject.label == subject.name:  # a base loss alone
        elementwise = _call(subject, loss.base, logits, targets)
        if not isinstance(elementwise, Tensor) or elementwise.shape != logits.shape:
            got = tuple(elementwise.shape) if isinstance(elementwise, Tensor) else elementwise
            raise subject.fail(f"expected a loss of shape {tuple(logits.shape)}, got {got}")
        # The any-class term calls the base on a (B, 1) column: it must not mix elements.
        column = _call(subject, loss.base, logits.reshape(-1, 1), targets.reshape(-1, 1))
        if not isinstance(column, Tensor) or column.numel() != logits.numel():
            raise subject.fail("on a (B·C, 1) column, the loss does not have B·C elements")
        _assert_close(
            subject,
            "the loss of a (B·C, 1) column and of (B, C)",
            column.reshape(logits.shape),
            elementwise,
            _EXACT_RTOL,
        )
    for term in loss.auxiliaries:
        per_image = _call(subject, term, logits, targets, loss.base)
        if not isinstance(per_image, Tensor) or per_image.shape != (logits.shape[0],):
            got = tuple(per_image.shape) if isinstance(per_image, Tensor) else per_image
            raise subject.fail(f"an auxiliary term must give shape ({logits.shape[0]},), got {got}")
        one_by_one = [
            _call(subject, term, logits[i : i + 1], targets[i : i + 1], loss.base)
            for i in range(len(logits))
        ]
        if not all(isinstance(one, Tensor) and one.shape == (1,) for one in one_by_one):
            raise subject.fail("for a batch of one image, an auxiliary term must give shape (1,)")
        _assert_close(
            subject,
            "per-image terms of the batch and of each image alone",
            torch.cat(one_by_one),
            per_image,
            _EXACT_RTOL,
        )


def _call(subject: _Subject, module: Callable[..., Any], *args: Any) -> Any:
    """Call a plugin's module directly; an exception is a failed check, not a crash."""
    try:
        return module(*args)
    except Exception as error:
        raise subject.fail(f"raised {type(error).__name__}: {error}") from error


@_loss_check("all_negative_batch")
def _all_negative_batch(subject: _Subject) -> None:
    """finite with finite gradients when no image has a label"""
    logits, targets = _batch()
    _evaluate(subject, subject.build(), logits, torch.zeros_like(targets))


@_loss_check("all_positive_batch")
def _all_positive_batch(subject: _Subject) -> None:
    """finite with finite gradients when every label is present"""
    logits, targets = _batch()
    _evaluate(subject, subject.build(), logits, torch.ones_like(targets))


@_loss_check("extreme_logits")
def _extreme_logits(subject: _Subject) -> None:
    """finite with finite gradients for logits of ±100, right and wrong"""
    logits, targets = _batch()
    saturated = torch.where(logits >= 0, 100.0, -100.0)
    loss = subject.build()
    _evaluate(subject, loss, saturated, targets)
    _evaluate(subject, loss, saturated, torch.ones_like(targets) - targets)
    _evaluate(subject, loss, torch.full_like(logits, 100.0), torch.zeros_like(targets))
    _evaluate(subject, loss, torch.full_like(logits, -100.0), torch.ones_like(targets))


@_loss_check("batch_of_one")
def _batch_of_one(subject: _Subject) -> None:
    """finite with finite gradients for a batch of one image"""
    logits, targets = _batch(1)
    loss = subject.build()
    _evaluate(subject, loss, logits, targets)
    _evaluate(subject, loss, logits, torch.zeros_like(targets))
    _evaluate(subject, loss, logits, torch.ones_like(targets))


@_loss_check("single_class")
def _single_class(subject: _Subject) -> None:
    """finite with finite gradients for a single class"""
    logits, targets = _batch(num_classes=1)
    _evaluate(subject, subject.build(num_classes=1), logits, targets)


@_loss_check("batch_order_invariance")
def _batch_order_invariance(subject: _Subject) -> None:
    """the same loss whatever the order of the images in the batch"""
    loss = subject.build()
    logits, targets = _batch()
    permutation = torch.randperm(len(logits), generator=torch.Generator().manual_seed(1))
    value = _evaluate(subject, loss, logits, targets)
    permuted = _evaluate(subject, loss, logits[permutation], targets[permutation])
    _assert_close(
        subject, "loss of the batch and of its rows permuted", permuted, value, _EXACT_RTOL
    )


@_loss_check("bfloat16_autocast")
def _bfloat16_autocast(subject: _Subject) -> None:
    """finite and close to float32 under torch.autocast('cpu', dtype=torch.bfloat16)"""
    loss = subject.build()
    logits, targets = _batch()
    # Compare on the same values: bf16 rounding of the logits is not the loss's doing.
    logits = logits.to(torch.bfloat16).float()
    reference = _evaluate(subject, loss, logits, targets)
    bf16 = torch.bfloat16
    from_float32 = _evaluate(subject, loss, logits, targets, autocast=bf16)
    from_bfloat16 = _evaluate(subject, loss, logits.to(bf16), targets, autocast=bf16)
    _assert_close(
        subject, "float32 logits under autocast vs float32", from_float32, reference, _BFLOAT16_RTOL
    )
    _assert_close(
        subject,
        "bfloat16 logits under autocast vs float32",
        from_bfloat16,
        reference,
        _BFLOAT16_RTOL,
    )


@_loss_check("composition")
def _composition(subject: _Subject) -> None:
    """composes with any_class (a base loss) or bce (an auxiliary term)"""
    logits, targets = _batch()
    _evaluate(subject, subject.build(), logits, targets)
    if subject.label == f"{subject.name}+any_class":
        # A zero-weight term must leave the base loss exactly as it is alone.
        muted = subject.build(any_class={"weight": 0.0})
        alone = _Subject(
            subject.name, subject.name, {**subject.spec, "name": subject.name}, subject.plugins
        )
        _assert_close(
            subject,
            "with any_class weight 0 vs the base loss alone",
            _evaluate(subject, muted, logits, targets),
            _evaluate(alone, alone.build(), logits, targets),
            _EXACT_RTOL,
        )


def _expect_spec_error(subject: _Subject, what: str, logits: Tensor, targets: Tensor) -> None:
    loss = subject.build()
    try:
        loss(logits, targets)
    except SpecError:
        return
    except Exception as error:
        raise subject.fail(
            f"{what}: raised {type(error).__name__}, not SpecError: {error}"
        ) from error
    raise subject.fail(f"{what}: no SpecError raised")


@_loss_check("shape_errors")
def _shape_errors(subject: _Subject) -> None:
    """a SpecError for inputs of the wrong shape"""
    logits, targets = _batch()
    _expect_spec_error(subject, "1-D logits and targets", logits[:, 0], targets[:, 0])
    _expect_spec_error(subject, "logits (16, 5) with targets (16, 3)", logits, targets[:, :3])
    _expect_spec_error(subject, "logits (16, 5) with targets (8, 5)", logits, targets[:8])
    _expect_spec_error(subject, "3-D logits and targets", logits[..., None], targets[..., None])


@_loss_check("non_binary_targets")
def _non_binary_targets(subject: _Subject) -> None:
    """a SpecError for targets other than 0 and 1"""
    logits, targets = _batch()
    for value in (0.5, 2.0, -1.0):
        bad = targets.clone()
        bad[2, 1] = value
        _expect_spec_error(subject, f"a target of {value}", logits, bad)


def check_loss(
    name: str, *, plugins: Plugins | None = None, options: Mapping[str, Any] | None = None
) -> None:
    """Run every check of :data:`LOSS_CHECKS` on the loss registered as ``name``.

    ``options`` are the loss's own options (as in a spec); ``plugins`` defaults to the
    installed ones. Raises one AssertionError listing every check that failed.
    """
    failures = []
    for check in LOSS_CHECKS.values():
        try:
            check(name, plugins, options)
        except AssertionError as error:
            failures.append(str(error))
    if failures:
        listed = "\n".join(f"  - {failure}" for failure in failures)
        raise AssertionError(
            f"loss {name!r} fails {len(failures)} of {len(LOSS_CHECKS)} conformance checks:\n"
            f"{listed}"
        )


def loss_conformance_test(
    name: str, *, options: Mapping[str, Any] | None = None
) -> Callable[[str], None]:
    """A pytest test running each check of :data:`LOSS_CHECKS` on ``name`` as its own case.

    Write ``test_my_loss = loss_conformance_test("my_loss")`` at the top level of a test file.
    """
    import pytest  # only test files call this; mlcbench itself does not need pytest

    @pytest.mark.parametrize("check", list(LOSS_CHECKS))
    def test_loss_conformance(check: str) -> None:
        LOSS_CHECKS[check](name, None, options)

    test_loss_conformance.__doc__ = f"Loss {name!r} keeps the mlcbench loss contract."
    return test_loss_conformance
