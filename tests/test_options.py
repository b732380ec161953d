"""Type checks of user-written values and plugin options, with the place named on failure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pytest

from mlcbench.errors import SpecError
from mlcbench.options import (
    MAX_LISTED,
    coerce,
    describe,
    option_parameters,
    unknown_key_error,
    validate_options,
)


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (int, "an integer"),
        (float, "a number"),
        (bool, "true or false"),
        (str, "a string"),
        (type(None), "null"),
        (Any, "any value"),
        (float | None, "a number or null"),
        (Literal["adamw", "sgd"], "one of 'adamw', 'sgd'"),
        (list[int], "a list of integers"),
        (tuple[float, ...], "a list of numbers"),
        (list[str], "a list of strings"),
        (dict[str, int], "a mapping"),
        (int | Literal["auto"], "an integer or one of 'auto'"),
    ],
)
def test_describe_names_types_for_users(annotation: Any, expected: str) -> None:
    assert describe(annotation) == expected


@pytest.mark.parametrize(
    ("value", "annotation", "expected"),
    [
        (3, int, 3),
        (3, float, 3.0),
        (2.5, float, 2.5),
        (True, bool, True),
        ("x", str, "x"),
        (None, float | None, None),
        (0.5, float | None, 0.5),
        ("auto", int | Literal["auto"], "auto"),
        (4, int | Literal["auto"], 4),
        ([1, 2], list[int], [1, 2]),
        ((1, 2), list[int], [1, 2]),
        ([1, 2], tuple[int, ...], (1, 2)),
        ([1, 2.5], list[float], [1.0, 2.5]),
        ({"a": 1}, dict[str, int], {"a": 1}),
        ({"a": 1}, Mapping[str, Any], {"a": 1}),
        ([0], Sequence[int], [0]),
        ("anything", Any, "anything"),
    ],
)
def test_coerce_accepts_and_widens(value: Any, annotation: Any, expected: Any) -> None:
    result = coerce(value, annotation, "x")
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "annotation", "message"),
    [
        ("ten", int, "train.epochs: expected an integer, got 'ten'"),
        (True, int, "train.epochs: expected an integer, got True"),
        (1.5, int, "train.epochs: expected an integer, got 1.5"),
        ("1", float, "train.epochs: expected a number, got '1'"),
        (False, float, "train.epochs: expected a number, got False"),
        (1, bool, "train.epochs: expected true or false, got 1"),
        (3, str, "train.epochs: expected a string, got 3"),
        ("x", float | None, "train.epochs: expected a number or null, got 'x'"),
        ("ADAMW", Literal["adamw"], "train.epochs: expected one of 'adamw', got 'ADAMW'"),
        # Literal compares types too: True == 1 but is not the literal 1.
        (True, Literal[1], "train.epochs: expected one of 1, got True"),
        ("0,1", list[int], "train.epochs: expected a list of integers, got '0,1'"),
        ([1, 2], dict[str, int], "train.epochs: expected a mapping, got [1, 2]"),
    ],
)
def test_coerce_rejects_with_place_and_value(value: Any, annotation: Any, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        coerce(value, annotation, "train.epochs")
    assert str(caught.value) == message


def test_coerce_names_the_list_item_that_is_wrong() -> None:
    with pytest.raises(SpecError, match=r"^seeds\[2\]: expected an integer, got 'two'$"):
        coerce([0, 1, "two"], list[int], "seeds")


def test_unknown_key_error_suggests_the_closest_name_and_lists_the_known() -> None:
    error = unknown_key_error("wieght", ["weight", "beta"], "losses[0].any_class", "option")
    assert str(error) == (
        "losses[0].any_class: unknown option 'wieght' — did you mean 'weight'? "
        "(known: beta, weight)"
    )


def test_unknown_key_error_without_a_close_match_gives_no_hint() -> None:
    error = unknown_key_error("zzz", ["weight", "beta"], "spec")
    assert str(error) == "spec: unknown key 'zzz' (known: beta, weight)"
    assert str(unknown_key_error("a", [], "x")) == "x: unknown key 'a' (known: none)"


def test_unknown_key_error_keeps_a_huge_name_list_short() -> None:
    known = [f"model_{i:04d}" for i in range(2000)] + ["resnet18", "resnet18d", "resnet34"]
    message = str(unknown_key_error("resnt18", known, "backbones[0]", "timm model"))
    assert "\n" not in message
    assert len(message) < 300
    assert "did you mean 'resnet18'?" in message
    assert "2003 names" in message
    assert "resnet18d" in message
    assert len(known) > MAX_LISTED


def _factory(
    model: str,
    *,
    num_classes: int,
    in_channels: int,
    gamma: float = 2.0,
    alpha: float | None = None,
    mode: Literal["a", "b"] = "a",
    depth: int,
) -> None:
    """A plugin factory with a family variant, reserved and required options."""


def _open_factory(*, num_classes: int, width: int = 8, **extra: Any) -> None:
    """Passes unknown options on (as timm.create_model does)."""


def test_option_parameters_leave_out_reserved_and_variadic() -> None:
    names = [p.name for p in option_parameters(_factory)]
    assert names == ["model", "gamma", "alpha", "mode", "depth"]
    assert [p.name for p in option_parameters(_open_factory)] == ["width"]


def test_validate_options_fills_every_default_and_coerces() -> None:
    resolved = validate_options(_factory, {"depth": 3, "gamma": 1}, "backbones[0]", skip=1)
    assert resolved == {"depth": 3, "gamma": 1.0, "alpha": None, "mode": "a"}
    assert type(resolved["gamma"]) is float


def test_validate_options_names_the_option_in_type_errors() -> None:
    with pytest.raises(SpecError, match=r"^losses\[1\]\.focal\.gamma: expected a number, got 'x'$"):
        validate_options(_factory, {"depth": 1, "gamma": "x"}, "losses[1].focal", skip=1)


def test_validate_options_suggests_a_misspelt_option() -> None:
    with pytest.raises(SpecError) as caught:
        validate_options(_factory, {"depth": 1, "gama": 1}, "losses[0].focal", skip=1)
    assert str(caught.value) == (
        "losses[0].focal: unknown option 'gama' — did you mean 'gamma'? "
        "(known: alpha, depth, gamma, mode)"
    )


def test_validate_options_requires_required_options() -> None:
    with pytest.raises(SpecError, match=r"^datasets\[0\]: missing required option 'depth'$"):
        validate_options(_factory, {}, "datasets[0]", skip=1)


@pytest.mark.parametrize("reserved", ["num_classes", "in_channels"])
def test_validate_options_rejects_what_mlcbench_sets_itself(reserved: str) -> None:
    with pytest.raises(SpecError, match=rf"^backbones\[0\]\.{reserved}: set by mlcbench"):
        validate_options(_factory, {"depth": 1, reserved: 3}, "backbones[0]", skip=1)


def test_validate_options_rejects_non_string_option_names() -> None:
    with pytest.raises(SpecError, match=r"^backbones\[0\]: option names must be strings, got 1$"):
        validate_options(_factory, {1: 2}, "backbones[0]", skip=1)


def test_open_ended_factories_take_unknown_options_unchecked() -> None:
    resolved = validate_options(_open_factory, {"drop_rate": 0.1}, "backbones[0]")
    assert resolved == {"drop_rate": 0.1, "width": 8}
    with pytest.raises(SpecError, match=r"^backbones\[0\]\.width: expected an integer"):
        validate_options(_open_factory, {"width": "wide"}, "backbones[0]")
