"""A small convolutional network that trains in seconds on a CPU."""

from __future__ import annotations

from torch import nn

from mlcbench.errors import SpecError
from mlcbench.hookspecs import RegisterBackbone, hookimpl


def _stage(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
    )


def smallcnn(
    *, num_classes: int, in_channels: int, width: int = 32, depth: int = 3, dropout: float = 0.0
) -> nn.Module:
    """Small CNN: `depth` stages of two 3×3 convolutions, channels doubling from `width`."""
    if width < 1 or depth < 1:
        raise SpecError(f"smallcnn: width and depth must be ≥ 1, got {width} and {depth}")
    if not 0.0 <= dropout < 1.0:
        raise SpecError(f"smallcnn.dropout: must lie in [0, 1), got {dropout}")
    stages = []
    channels = in_channels
    for stage in range(depth):
        out_channels = width * 2**stage
        stages.append(_stage(channels, out_channels, dropout))
        channels = out_channels
    return nn.Sequential(
        *stages,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, num_classes),
    )


@hookimpl
def mlcbench_register_backbones(register: RegisterBackbone) -> None:
    register("smallcnn", smallcnn)
