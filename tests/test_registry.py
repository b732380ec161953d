"""The generic registry: unique names, families, helpful misses."""

from __future__ import annotations

import pytest

from mlcbench.errors import PluginError
from mlcbench.registry import Registry


@pytest.fixture
def losses() -> Registry[int]:
    registry: Registry[int] = Registry("loss")
    for number, name in enumerate(["focal", "bce", "any_class"]):
        registry.add(name, number)
    return registry


def test_lists_names_sorted_and_iterates_in_that_order(losses: Registry[int]) -> None:
    assert losses.names() == ["any_class", "bce", "focal"]
    assert list(losses) == [("any_class", 2), ("bce", 1), ("focal", 0)]
    assert len(losses) == 3


def test_lookup_and_get(losses: Registry[int]) -> None:
    assert losses.lookup("bce") == (1, None)
    assert losses.get("focal") == 0
    assert "bce" in losses
    assert "nope" not in losses
    assert 3 not in losses


def test_rejects_a_duplicate_name(losses: Registry[int]) -> None:
    with pytest.raises(PluginError, match=r"^Duplicate loss 'bce': another plugin"):
        losses.add("bce", 9)
    assert losses.get("bce") == 1


@pytest.mark.parametrize("name", ["", " bce2", "bce2 ", "\tx"])
def test_rejects_empty_or_padded_names(losses: Registry[int], name: str) -> None:
    with pytest.raises(PluginError, match="empty or padded"):
        losses.add(name, 9)
    assert len(losses) == 3


def test_a_miss_suggests_the_closest_name_and_lists_the_known(losses: Registry[int]) -> None:
    with pytest.raises(PluginError) as caught:
        losses.get("focall")
    assert str(caught.value) == (
        "unknown loss 'focall' — did you mean 'focal'? (known: any_class, bce, focal)"
    )
    assert not isinstance(caught.value, KeyError)


def test_a_miss_without_a_close_name_lists_the_known(losses: Registry[int]) -> None:
    assert losses.unknown_message("xyz") == "unknown loss 'xyz' (known: any_class, bce, focal)"


def test_a_family_answers_every_member_with_its_variant() -> None:
    backbones: Registry[str] = Registry("backbone")
    backbones.add("timm/*", "timm-factory")
    backbones.add("smallcnn", "cnn-factory")
    assert backbones.lookup("timm/resnet18") == ("timm-factory", "resnet18")
    assert backbones.lookup("timm/hf-hub:org/model") == ("timm-factory", "hf-hub:org/model")
    assert backbones.lookup("smallcnn") == ("cnn-factory", None)
    assert "timm/anything" in backbones
    assert "smallcnn/x" not in backbones  # not a family
    with pytest.raises(PluginError, match="unknown backbone 'timm/'"):
        backbones.lookup("timm/")  # a family needs a variant
    with pytest.raises(PluginError, match="unknown backbone 'torchvision/resnet18'"):
        backbones.lookup("torchvision/resnet18")
