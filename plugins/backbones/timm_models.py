"""Every timm model by name: ``timm/resnet18``, ``timm/tresnet_l``, ``timm/maxvit_small_tf_224``."""

from __future__ import annotations

from typing import Any

from torch import nn

from mlcbench.errors import SpecError
from mlcbench.hookspecs import RegisterBackbone, hookimpl


def timm_model(
    model: str, *, num_classes: int, in_channels: int, pretrained: bool = False, **options: Any
) -> nn.Module:
    """Any timm model; extra options go to timm.create_model (no weights unless pretrained)."""
    import timm

    if not timm.is_model(model):
        close = timm.list_models(f"*{model[:4]}*")[:5]
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise SpecError(f"timm has no model {model!r}.{hint} See timm.list_models().")
    try:
        return timm.create_model(
            model, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels, **options
        )
    except TypeError as error:
        raise SpecError(f"timm/{model}: {error}") from None


def timm_model_names() -> list[str]:
    import timm

    return list(timm.list_models())


@hookimpl
def mlcbench_register_backbones(register: RegisterBackbone) -> None:
    register("timm/*", timm_model, variants=timm_model_names)
