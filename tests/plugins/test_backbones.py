"""Every registered backbone builds for the dataset's shape and maps images to logits."""

from __future__ import annotations

import pytest
import torch

from mlcbench.errors import SpecError
from mlcbench.plugin_manager import load_plugins

#: A small representative of each family, built without weights.
FAMILY_EXAMPLES = {"timm/*": "test_resnet", "torchvision/*": "resnet18"}
PLUGINS = load_plugins()


def build(name: str, num_classes: int, in_channels: int, **options: object) -> torch.nn.Module:
    entry, variant = PLUGINS.backbones.lookup(name)
    args = () if variant is None else (variant,)
    return entry.factory(*args, num_classes=num_classes, in_channels=in_channels, **options)


def registered_backbones() -> list[str]:
    names = []
    for name, _ in PLUGINS.backbones:
        if name.endswith("/*"):
            names.append(name.removesuffix("*") + FAMILY_EXAMPLES[name])
        else:
            names.append(name)
    return names


@pytest.mark.parametrize("name", registered_backbones())
@pytest.mark.parametrize("in_channels", [1, 3])
def test_backbone_maps_a_batch_to_one_logit_per_class(name: str, in_channels: int) -> None:
    torch.manual_seed(0)
    model = build(name, num_classes=5, in_channels=in_channels).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, in_channels, 32, 32))
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", registered_backbones())
def test_backbone_trains_its_parameters(name: str) -> None:
    torch.manual_seed(0)
    model = build(name, num_classes=3, in_channels=1).train()
    logits = model(torch.randn(4, 1, 32, 32))
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_every_family_has_an_example() -> None:
    families = {name for name, _ in PLUGINS.backbones if name.endswith("/*")}
    assert families == set(FAMILY_EXAMPLES)


def test_smallcnn_rejects_bad_sizes() -> None:
    with pytest.raises(SpecError, match="width and depth"):
        build("smallcnn", 3, 1, width=0)


def test_unknown_timm_and_torchvision_models_fail_clearly() -> None:
    with pytest.raises(SpecError, match="timm has no model 'resnt18'"):
        build("timm/resnt18", 3, 3)
    with pytest.raises(SpecError, match="torchvision has no classification model"):
        build("torchvision/resnt18", 3, 3)


def test_timm_options_pass_through() -> None:
    model = build("timm/test_resnet", 3, 3, drop_rate=0.25)
    assert model.drop_rate == 0.25
