"""Benchmark specs: every mistake is one line naming its place in the file."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlcbench.errors import MlcbenchError, SpecError
from mlcbench.spec import (
    DEFAULT_CLASS_BALANCE_BETA,
    MAX_SEED,
    BenchmarkSpec,
    LossSpec,
    PluginSpec,
    TrainConfig,
    load_spec,
    parse_loss,
    parse_spec,
)


def spec_error(raw: Any) -> str:
    """The message parse_spec gives for ``raw``; it must be one line."""
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    message = str(caught.value)
    assert "\n" not in message
    return message


def with_(raw: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**raw, **changes}


# --- files -------------------------------------------------------------------------------


def test_loads_the_quickstart_spec(quickstart_path: Path) -> None:
    spec = load_spec(quickstart_path)
    assert isinstance(spec, BenchmarkSpec)
    assert spec.name == "quickstart"
    assert [d.name for d in spec.datasets] == ["negdigits"]
    assert [b.name for b in spec.backbones] == ["smallcnn", "timm/test_resnet"]
    assert [loss.name for loss in spec.losses] == [
        "bce",
        "bce+any_class",
        "focal",
        "focal+any_class",
    ]
    assert spec.seeds == (0, 1, 2)
    assert spec.train.epochs == 8
    assert spec.train.lr == 0.002
    assert spec.source == str(quickstart_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]


def test_a_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: no such spec file")
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path)  # a directory is not a spec file


def test_bad_yaml_gives_the_line(write_spec: Callable[..., Path]) -> None:
    path = write_spec("name: x\ndatasets: [negdigits\nbackbones: [smallcnn]\nlosses: [bce]\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not valid YAML at line ")
    assert "\n" not in message
    line = int(message.split("at line ")[1].split(",")[0])
    assert 2 <= line <= 4


def test_bad_indentation_gives_its_line(write_spec: Callable[..., Path]) -> None:
    path = write_spec("name: x\ndatasets:\n  - negdigits\n   bad: [\n")
    with pytest.raises(SpecError, match=r"not valid YAML at line 4, column \d+"):
        load_spec(path)


def test_yaml_is_loaded_safely(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write_spec(
        "name: x\n"
        "datasets: [negdigits]\n"
        "backbones: [smallcnn]\n"
        "losses: [bce]\n"
        f"description: !!python/object/apply:builtins.exec [\"open({str(marker)!r}, 'w')\"]\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert not marker.exists()
    assert str(caught.value).startswith(f"{path}: not valid YAML at line 5")
    path = write_spec("name: !!python/object:pathlib.PurePosixPath {}\n", "object.yaml")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "42\n"])
def test_a_spec_that_is_not_a_mapping(write_spec: Callable[..., Path], text: str) -> None:
    path = write_spec(text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: a spec is a mapping with keys name, ")


def test_errors_from_a_file_are_prefixed_with_its_path(write_spec: Callable[..., Path]) -> None:
    path = write_spec(
        "name: x\ndatasets: [negdigits]\nbackbones: [smallcnn]\nlosses: [bce]\n"
        "train:\n  epochs: ten\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value) == f"{path}: train.epochs: expected an integer, got 'ten'"


# --- top level -----------------------------------------------------------------------------


def test_minimal_spec_gets_the_defaults(minimal_raw: dict[str, Any]) -> None:
    spec = parse_spec(minimal_raw)
    assert spec.seeds == (0,)
    assert spec.train == TrainConfig()
    assert spec.description == ""
    assert spec.source == "<spec>"
    assert spec.losses[0].class_balance == DEFAULT_CLASS_BALANCE_BETA


def test_single_entries_need_no_list(minimal_raw: dict[str, Any]) -> None:
    spec = parse_spec(with_(minimal_raw, datasets="negdigits", losses={"name": "focal"}))
    assert spec.datasets == (PluginSpec("negdigits"),)
    assert spec.losses[0].name == "focal"


def test_unknown_top_level_key_with_suggestion(minimal_raw: dict[str, Any]) -> None:
    message = spec_error(with_(minimal_raw, dataset=["negdigits"]))
    assert message == (
        "spec: unknown key 'dataset' — did you mean 'datasets'? "
        "(known: backbones, datasets, description, executor, logging, losses, name, reference, "
        "seeds, train, tune)"
    )


@pytest.mark.parametrize("key", ["name", "datasets", "backbones", "losses"])
def test_missing_required_key(minimal_raw: dict[str, Any], key: str) -> None:
    del minimal_raw[key]
    assert spec_error(minimal_raw).startswith(f"{key}: missing; every spec needs")


@pytest.mark.parametrize("raw", [None, [], "spec", 3])
def test_non_mapping_spec(raw: Any) -> None:
    assert spec_error(raw).startswith("a spec is a mapping")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": 3}, "name: expected a string, got 3"),
        ({"name": "my bench"}, "name: 'my bench' may hold only letters, digits, '_', '.', '-'"),
        ({"name": "../up"}, "name: '../up' may hold only letters, digits, '_', '.', '-'"),
        ({"description": ["a"]}, "description: expected a string, got ['a']"),
        ({"datasets": []}, "datasets: expected a non-empty list, got []"),
        ({"backbones": 3}, "backbones: expected a non-empty list, got 3"),
        ({"datasets": [3]}, "datasets[0]: expected a plugin name or a mapping with 'name', got 3"),
        (
            {"datasets": ["negdigits", {"seed": 1}]},
            "datasets[1]: a mapping entry needs a 'name' key",
        ),
        ({"backbones": ["smallcnn", " "]}, "backbones[1]: empty plugin name"),
        ({"backbones": [{"name": 5}]}, "backbones[0].name: expected a string, got 5"),
        (
            {"backbones": [{"name": "smallcnn", "label": 1}]},
            "backbones[0].label: expected a string, got 1",
        ),
        ({"losses": ["bce", 7]}, "losses[1]: expected a loss name or a mapping with 'name', got 7"),
    ],
)
def test_wrong_values_name_their_place(
    minimal_raw: dict[str, Any], changes: dict[str, Any], message: str
) -> None:
    assert spec_error(with_(minimal_raw, **changes)) == message


def test_plugin_entries_keep_options_and_labels(minimal_raw: dict[str, Any]) -> None:
    spec = parse_spec(
        with_(
            minimal_raw,
            datasets=[{"name": " negdigits ", "seed": 3, "label": "nd3"}],
            backbones=["smallcnn", {"name": "smallcnn", "width": 8, "label": "narrow"}],
        )
    )
    assert spec.datasets == (PluginSpec("negdigits", {"seed": 3}, "nd3"),)
    assert spec.datasets[0].where == "datasets[0]"
    assert spec.datasets[0].display_name == "nd3"
    assert spec.backbones[1].options == {"width": 8}
    assert spec.backbones[0].display_name == "smallcnn"


def test_two_backbones_with_one_name_need_labels(minimal_raw: dict[str, Any]) -> None:
    # Leaderboard rows are keyed by backbone name: these two would be averaged together.
    message = spec_error(
        with_(minimal_raw, backbones=["smallcnn", {"name": "smallcnn", "width": 64}])
    )
    assert message == (
        "backbones[1]: 'smallcnn' is already used by backbones[0]; "
        "give one of them a distinct 'label'"
    )


# --- seeds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seeds", "expected"),
    [(1, (0,)), (3, (0, 1, 2)), ([4, 2, 9], (4, 2, 9)), ([0], (0,)), ((5, 6), (5, 6))],
)
def test_seeds_as_count_or_list(minimal_raw: dict[str, Any], seeds: Any, expected: Any) -> None:
    assert parse_spec(with_(minimal_raw, seeds=seeds)).seeds == expected


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ([1, 2, 1], "seeds: [1, 2, 1] repeats a seed"),
        (0, "seeds: a count must be at least 1, got 0"),
        (-2, "seeds: a count must be at least 1, got -2"),
        ([], "seeds: expected a non-empty list of integers or a count"),
        (True, "seeds: expected a list of integers, got True"),
        ("3", "seeds: expected a list of integers, got '3'"),
        ([0, 1.5], "seeds[1]: expected an integer, got 1.5"),
        ([0, -1], f"seeds[1]: must lie in 0 … {MAX_SEED}, got -1"),
        ([2**32], f"seeds[0]: must lie in 0 … {MAX_SEED}, got {2**32}"),
    ],
)
def test_bad_seeds(minimal_raw: dict[str, Any], seeds: Any, message: str) -> None:
    assert spec_error(with_(minimal_raw, seeds=seeds)) == message


# --- train ---------------------------------------------------------------------------------


def test_train_settings_are_checked_and_widened(minimal_raw: dict[str, Any]) -> None:
    train = parse_spec(
        with_(
            minimal_raw,
            train={
                "epochs": 2,
                "lr": 1,
                "gradient_clip": None,
                "devices": [0, 1],
                "num_workers": 0,
            },
        )
    ).train
    assert train.epochs == 2
    assert train.lr == 1.0 and type(train.lr) is float
    assert train.gradient_clip is None
    assert train.devices == (0, 1)  # frozen and hashable
    assert train.num_workers == 0
    hash(train)


def test_empty_train_section_means_defaults(minimal_raw: dict[str, Any]) -> None:
    assert parse_spec(with_(minimal_raw, train=None)).train == TrainConfig()
    assert parse_spec(with_(minimal_raw, train={})).train == TrainConfig()


def test_unknown_train_setting_with_suggestion(minimal_raw: dict[str, Any]) -> None:
    message = spec_error(with_(minimal_raw, train={"epoch": 3}))
    assert message.startswith("train: unknown setting 'epoch' — did you mean 'epochs'? (known: ")
    assert "weight_decay" in message


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"epochs": "ten"}, "train.epochs: expected an integer, got 'ten'"),
        ({"epochs": 2.5}, "train.epochs: expected an integer, got 2.5"),
        ({"lr": "fast"}, "train.lr: expected a number, got 'fast'"),
        (
            {"optimizer": "lion"},
            "train.optimizer: expected one of 'adamw', 'adam', 'sgd', got 'lion'",
        ),
        ({"gradient_clip": "no"}, "train.gradient_clip: expected a number or null, got 'no'"),
        (
            {"num_workers": "many"},
            "train.num_workers: expected an integer or one of 'auto', got 'many'",
        ),
        ({"epochs": 0}, "train.epochs: must be at least 1, got 0"),
        ({"batch_size": -4}, "train.batch_size: must be at least 1, got -4"),
        ({"lr": -0.1}, "train.lr: must not be negative, got -0.1"),
        ({"warmup_epochs": -1}, "train.warmup_epochs: must not be negative, got -1.0"),
        (5, "train: expected a mapping of training settings, got 5"),
        (0, "train: expected a mapping of training settings, got 0"),
        ([], "train: expected a mapping of training settings, got []"),
    ],
)
def test_bad_train_settings(minimal_raw: dict[str, Any], train: Any, message: str) -> None:
    assert spec_error(with_(minimal_raw, train=train)) == message


def test_train_identity_leaves_out_runtime_fields() -> None:
    identity = TrainConfig(num_workers=3, devices=2, accelerator="cpu").identity()
    assert identity == TrainConfig().identity()
    assert not {"num_workers", "devices", "accelerator"} & set(identity)
    assert {"epochs", "lr", "batch_size", "precision", "gradient_clip"} <= set(identity)


# --- losses --------------------------------------------------------------------------------


def test_loss_string_forms() -> None:
    loss = parse_loss("focal+any_class", "losses[0]")
    assert loss.parts == (PluginSpec("focal"), PluginSpec("any_class"))
    assert loss.name == "focal+any_class"
    assert loss.display_name == "focal+any_class"
    assert loss.class_balance == DEFAULT_CLASS_BALANCE_BETA
    assert loss.where == "losses[0]"
    assert parse_loss(" bce + any_class ").name == "bce+any_class"


def test_loss_mapping_with_per_part_options() -> None:
    loss = parse_loss(
        {
            "name": "focal+any_class",
            "focal": {"gamma": 1},
            "any_class": {"weight": 0.5, "beta": 0.05},
            "class_balance": 0.999,
            "label": "ours",
        }
    )
    assert loss.parts == (
        PluginSpec("focal", {"gamma": 1}),
        PluginSpec("any_class", {"weight": 0.5, "beta": 0.05}),
    )
    assert loss.class_balance == 0.999
    assert loss.display_name == "ours"
    assert loss.name == "focal+any_class"


def test_single_part_loss_takes_flat_or_nested_options() -> None:
    flat = parse_loss({"name": "focal", "gamma": 1, "alpha": 0.25})
    nested = parse_loss({"name": "focal", "focal": {"gamma": 1, "alpha": 0.25}})
    assert flat.parts == (PluginSpec("focal", {"gamma": 1, "alpha": 0.25}),)
    assert flat == nested
    assert parse_loss({"name": "bce"}).parts == (PluginSpec("bce"),)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, DEFAULT_CLASS_BALANCE_BETA), (False, None), (None, None), (0.99, 0.99), (0, 0.0)],
)
def test_class_balance_values(value: Any, expected: float | None) -> None:
    assert parse_loss({"name": "bce", "class_balance": value}).class_balance == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"name": "bce", "class_balance": 1.0},
            "losses[2].class_balance: β must lie in [0, 1) (or be false to switch off), got 1.0",
        ),
        (
            {"name": "bce", "class_balance": -0.5},
            "losses[2].class_balance: β must lie in [0, 1) (or be false to switch off), got -0.5",
        ),
        (
            {"name": "bce", "class_balance": "yes"},
            "losses[2].class_balance: expected a number, got 'yes'",
        ),
        (
            {"name": "focal+any_class", "gamma": 1},
            "losses[2]: unknown loss part 'gamma' (known: any_class, focal)",
        ),
        (
            {"name": "focal+any_class", "any_clas": {"weight": 1}},
            "losses[2]: unknown loss part 'any_clas' — did you mean 'any_class'? "
            "(known: any_class, focal)",
        ),
        (
            {"name": "focal+any_class", "focal": 2},
            "losses[2].focal: expected a mapping of options, got 2",
        ),
        ({"gamma": 2}, "losses[2]: a loss mapping needs a 'name' key, e.g. name: focal+any_class"),
        ({"name": 3}, "losses[2].name: expected a string, got 3"),
        ({"name": "bce", "label": 3}, "losses[2].label: expected a string, got 3"),
        ("focal+", "losses[2]: 'focal+' has an empty part; write e.g. 'focal+any_class'"),
        ("+focal", "losses[2]: '+focal' has an empty part; write e.g. 'focal+any_class'"),
        ("bce+any_class+bce", "losses[2]: 'bce+any_class+bce' names a part twice"),
        (["bce"], "losses[2]: expected a loss name or a mapping with 'name', got ['bce']"),
    ],
)
def test_bad_losses_name_their_place(raw: Any, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_loss(raw, "losses[2]")
    assert str(caught.value) == message


def test_loss_errors_carry_the_list_index(minimal_raw: dict[str, Any]) -> None:
    losses = ["bce", "focal", {"name": "focal+any_class", "focal": "x"}]
    assert spec_error(with_(minimal_raw, losses=losses)) == (
        "losses[2].focal: expected a mapping of options, got 'x'"
    )


def test_duplicate_loss_labels_are_rejected(minimal_raw: dict[str, Any]) -> None:
    assert spec_error(with_(minimal_raw, losses=["bce", "focal", "bce"])) == (
        "losses[2]: 'bce' is already used by losses[0]; give one of them a distinct 'label'"
    )
    assert spec_error(
        with_(minimal_raw, losses=["bce", {"name": "focal", "label": "bce"}])
    ).startswith("losses[1]: 'bce' is already used by losses[0]")
    # The same loss twice with different settings is fine once one has a label.
    spec = parse_spec(
        with_(minimal_raw, losses=["bce", {"name": "bce", "class_balance": False, "label": "raw"}])
    )
    assert [loss.display_name for loss in spec.losses] == ["bce", "raw"]


def test_spec_errors_are_mlcbench_errors_with_exit_code_2() -> None:
    assert issubclass(SpecError, MlcbenchError)
    assert SpecError.exit_code == 2


def test_loss_spec_equality_ignores_where() -> None:
    assert parse_loss("bce", "losses[0]") == parse_loss("bce", "losses[3]")
    assert LossSpec((PluginSpec("bce"),)) == parse_loss("bce")


def test_executor_and_logging_are_runtime_settings(minimal_raw: dict[str, Any]) -> None:
    from mlcbench.spec import ExecutorConfig, WandbConfig

    spec = parse_spec(
        {
            **minimal_raw,
            "executor": {"name": "ray", "address": "auto", "gpus_per_cell": 1},
            "logging": {"wandb": {"project": "neg", "mode": "offline"}},
        }
    )
    assert spec.executor == ExecutorConfig("ray", "auto", 1.0, 1.0)
    assert spec.logging.wandb == WandbConfig("neg", None, "offline")
    assert parse_spec({**minimal_raw, "executor": "local"}).executor == ExecutorConfig()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"executor": "slurm"}, "executor.name: expected one of 'local', 'ray', got 'slurm'"),
        ({"executor": {"name": "ray", "gpu": 1}}, "executor: unknown key 'gpu'"),
        ({"logging": {"tensorboard": {}}}, "logging: unknown logger 'tensorboard'"),
        ({"logging": {"wandb": {"mode": "offline"}}}, "logging.wandb: missing project"),
    ],
)
def test_bad_executor_or_logging_names_the_place(
    minimal_raw: dict[str, Any], extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec({**minimal_raw, **extra})
    assert message in str(error.value)
