"""torchvision classifiers by name: ``torchvision/resnet18``, ``torchvision/convnext_tiny``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlcbench.errors import SpecError
from mlcbench.hookspecs import RegisterBackbone, hookimpl


class RepeatChannels(nn.Module):
    """Feeds a grayscale batch to a network built for RGB by repeating the channel."""

    def __init__(self, network: nn.Module, in_channels: int, expected: int = 3) -> None:
        super().__init__()
        self.network = network
        self.repeats = expected // in_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images.repeat(1, self.repeats, 1, 1))


def torchvision_model(
    model: str, *, num_classes: int, in_channels: int, **options: Any
) -> nn.Module:
    """A torchvision classifier, untrained (weights=None); options go to get_model."""
    from torchvision import models

    if model not in torchvision_model_names():
        raise SpecError(
            f"torchvision has no classification model {model!r}; "
            f"see torchvision.models.list_models() (e.g. resnet18, convnext_tiny)"
        )
    if in_channels not in (1, 3):
        raise SpecError(f"torchvision/{model}: takes 1 or 3 input channels, got {in_channels}")
    network = models.get_model(model, weights=None, num_classes=num_classes, **options)
    return network if in_channels == 3 else RepeatChannels(network, in_channels)


def torchvision_model_names() -> list[str]:
    from torchvision import models

    return list(models.list_models(module=models))


@hookimpl
def mlcbench_register_backbones(register: RegisterBackbone) -> None:
    register("torchvision/*", torchvision_model, variants=torchvision_model_names)
