"""The any-class picture: right values, a real PNG, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mlcbench
from mlcbench.errors import SpecError
from mlcbench.explain import any_class_loss_surface, explain_any_class


def test_surface_equals_the_loss_plugins_any_class_term() -> None:
    surface = any_class_loss_surface((1.0, 0.0), beta=0.1, resolution=8)
    grid = (np.arange(8) + 0.5) / 8
    p1, p2 = grid[3], grid[::-1][5]
    logits = torch.logit(torch.tensor([[p1, p2]], dtype=torch.float64))
    loss = mlcbench.create_loss(
        {"name": "bce+any_class", "any_class": {"beta": 0.1, "weight": 1.0}, "class_balance": False}
    )
    term = loss.auxiliaries[0](logits, torch.tensor([[1.0, 0.0]], dtype=torch.float64), loss.base)
    assert surface[5, 3] == pytest.approx(float(term), rel=1e-9)


def test_the_term_rewards_a_confident_present_class_and_silence_on_negatives() -> None:
    positive = any_class_loss_surface((1.0, 0.0), beta=0.02)
    negative = any_class_loss_surface((0.0, 0.0), beta=0.02)
    assert positive[-1, -1] < positive[-1, 0]  # p1 high beats p1 low
    assert negative[-1, 0] < negative[0, -1]  # both low beats both high
    assert np.array_equal(negative, any_class_loss_surface((0.0, 0.0), beta=1.0))  # λ irrelevant


def test_writes_a_png_and_rejects_other_names(tmp_path: Path) -> None:
    from PIL import Image

    out = explain_any_class(tmp_path / "any.png")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 400
    with pytest.raises(SpecError, match=r"name the file \*\.png"):
        explain_any_class(tmp_path / "any.jpg")
