"""Grid expansion: order, count, stable ids, and every plugin mistake caught before training."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlcbench import __version__
from mlcbench.errors import SpecError
from mlcbench.grid import ID_LENGTH, expand, stable_hash
from mlcbench.plugin_manager import Plugins
from mlcbench.spec import load_spec, parse_spec

HEX_ID = re.compile(rf"^[0-9a-f]{{{ID_LENGTH}}}$")


def ids(raw: dict[str, Any], plugins: Plugins) -> list[str]:
    return [cell.id for cell in expand(parse_spec(raw), plugins)]


def grid_error(raw: dict[str, Any], plugins: Plugins, source: str = "bench.yaml") -> str:
    with pytest.raises(SpecError) as caught:
        expand(parse_spec(raw, source=source), plugins)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{source}: ")
    return message.removeprefix(f"{source}: ")


def test_expansion_order_and_count(plugins: Plugins) -> None:
    raw = {
        "name": "order",
        "datasets": ["negdigits", {"name": "negdigits", "seed": 1, "label": "nd1"}],
        "backbones": ["smallcnn", {"name": "smallcnn", "width": 8, "label": "narrow"}],
        "losses": ["bce", "focal+any_class", {"name": "focal", "gamma": 1, "label": "f1"}],
        "seeds": [7, 3],
    }
    cells = expand(parse_spec(raw), plugins)
    assert len(cells) == 2 * 2 * 3 * 2
    expected = list(
        itertools.product(
            ["negdigits", "nd1"], ["smallcnn", "narrow"], ["bce", "focal+any_class", "f1"], [7, 3]
        )
    )
    got = [
        (c.dataset.spec.display_name, c.backbone.spec.display_name, c.loss.display_name, c.seed)
        for c in cells
    ]
    assert got == expected
    assert all(HEX_ID.match(cell.id) for cell in cells)
    assert len({cell.id for cell in cells}) == len(cells)
    assert cells[0].describe() == "negdigits · smallcnn · bce · seed 7"


def test_quickstart_has_24_cells_with_stable_ids(quickstart_path: Path, plugins: Plugins) -> None:
    first = expand(load_spec(quickstart_path), plugins)
    second = expand(load_spec(quickstart_path), plugins)
    assert len(first) == 2 * 4 * 3  # backbones × losses × seeds
    assert [c.id for c in first] == [c.id for c in second]
    assert all(HEX_ID.match(c.id) for c in first)
    assert [c.seed for c in first[:3]] == [0, 1, 2]


def test_ids_are_the_same_in_another_process(quickstart_path: Path, plugins: Plugins) -> None:
    """Ids may not depend on hash randomisation, object ids or the process."""
    here = [c.id for c in expand(load_spec(quickstart_path), plugins)]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-m", "mlcbench", "run", str(quickstart_path), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    there = [line.split()[0] for line in result.stdout.splitlines() if HEX_ID.match(line[:12])]
    assert there == here


def test_ids_ignore_key_order_and_runtime_settings(
    quickstart_raw: dict[str, Any], plugins: Plugins
) -> None:
    reference = ids(quickstart_raw, plugins)
    reordered = dict(reversed(list(quickstart_raw.items())))
    reordered["train"] = dict(reversed(list(quickstart_raw["train"].items())))
    assert ids(reordered, plugins) == reference
    runtime = {**quickstart_raw["train"], "num_workers": 5, "devices": [0, 1], "accelerator": "cpu"}
    assert ids({**quickstart_raw, "train": runtime}, plugins) == reference
    # Labels and descriptions name things; they do not change what runs.
    labelled = {
        **quickstart_raw,
        "description": "other words",
        "datasets": [{"name": "negdigits", "label": "digits"}],
    }
    assert ids(labelled, plugins) == reference


def test_ids_ignore_how_options_are_written(minimal_raw: dict[str, Any], plugins: Plugins) -> None:
    reference = ids(minimal_raw, plugins)
    # Stating a default, an int for a float, nested or flat loss options: the same run.
    explicit = {
        **minimal_raw,
        "datasets": [{"name": "negdigits", "seed": 0, "max_scale": 2}],
        "backbones": [{"name": "smallcnn", "width": 32}],
        "losses": [{"name": "bce", "class_balance": True}],
    }
    assert ids(explicit, plugins) == reference
    flat = ids({**minimal_raw, "losses": [{"name": "focal", "gamma": 1}]}, plugins)
    nested = ids({**minimal_raw, "losses": [{"name": "focal", "focal": {"gamma": 1.0}}]}, plugins)
    assert flat == nested


@pytest.mark.parametrize(
    "changes",
    [
        {"seeds": [1]},
        {"train": {"lr": 0.01}},
        {"train": {"epochs": 3}},
        {"train": {"precision": "bf16-mixed"}},
        {"losses": [{"name": "bce", "class_balance": False}]},
        {"losses": [{"name": "bce", "class_balance": 0.99}]},
        {"losses": ["focal"]},
        {"losses": [{"name": "focal", "gamma": 1}]},
        {"losses": ["bce+any_class"]},
        {"losses": [{"name": "bce+any_class", "any_class": {"weight": 0.5}}]},
        {"losses": [{"name": "bce+any_class", "any_class": {"beta": 0.05}}]},
        {"datasets": [{"name": "negdigits", "seed": 1}]},
        {"backbones": [{"name": "smallcnn", "width": 16}]},
    ],
)
def test_ids_change_with_every_result_affecting_value(
    minimal_raw: dict[str, Any], plugins: Plugins, changes: dict[str, Any]
) -> None:
    assert ids({**minimal_raw, **changes}, plugins) != ids(minimal_raw, plugins)


def test_cell_config_states_everything(minimal_raw: dict[str, Any], plugins: Plugins) -> None:
    (cell,) = expand(parse_spec(minimal_raw), plugins)
    config = cell.config
    assert cell.id == stable_hash(config)
    assert config["seed"] == 0
    assert config["dataset"]["name"] == "negdigits"
    assert config["dataset"]["options"]["image_size"] == 32  # defaults filled in
    assert config["backbone"] == {
        "name": "smallcnn",
        "options": {"width": 32, "depth": 3, "dropout": 0.0},
    }
    assert config["loss"] == {
        "name": "bce",
        "parts": [("bce", {})],
        "class_balance": 0.9999,
    }
    assert "num_workers" not in config["train"]
    assert config["versions"] == {"mlcbench": __version__}


def test_stable_hash_is_key_order_independent() -> None:
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    assert HEX_ID.match(stable_hash({}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"datasets": ["negdigit"]},
            "datasets[0]: unknown dataset 'negdigit' — did you mean 'negdigits'? "
            "(known: chestxray14, coco, csv, negdigits, sewerml)",
        ),
        (
            {"backbones": ["smallcnn", "smalcnn"]},
            "backbones[1]: unknown backbone 'smalcnn' — did you mean 'smallcnn'? "
            "(known: smallcnn, timm/*, torchvision/*)",
        ),
        (
            {"losses": ["bce", "bce+any_class", "focall"]},
            "losses[2]: unknown loss 'focall' — did you mean 'focal'? "
            "(known: any_class, asl, bce, focal)",
        ),
        (
            {"losses": ["bce", "focal+any_clas"]},
            "losses[1]: unknown loss 'any_clas' — did you mean 'any_class'? "
            "(known: any_class, asl, bce, focal)",
        ),
        (
            {"losses": ["any_class+bce"]},
            "losses[0]: 'any_class' is an auxiliary loss; write one base loss first, then "
            "auxiliary terms (e.g. 'focal+any_class')",
        ),
        (
            {"losses": ["any_class"]},
            "losses[0]: 'any_class' is an auxiliary loss; write one base loss first, then "
            "auxiliary terms (e.g. 'focal+any_class')",
        ),
        (
            {"losses": ["bce+focal"]},
            "losses[0]: 'focal' is a base loss; write one base loss first, then "
            "auxiliary terms (e.g. 'focal+any_class')",
        ),
        (
            {"losses": [{"name": "focal", "gama": 1}]},
            "losses[0].focal: unknown option 'gama' — did you mean 'gamma'? (known: alpha, gamma)",
        ),
        (
            {"losses": [{"name": "bce+any_class", "any_class": {"wieght": 1}}]},
            "losses[0].any_class: unknown option 'wieght' — did you mean 'weight'? "
            "(known: beta, weight)",
        ),
        (
            {"losses": [{"name": "bce+any_class", "any_class": {"weight": "one"}}]},
            "losses[0].any_class.weight: expected a number, got 'one'",
        ),
        (
            {"datasets": [{"name": "negdigits", "sed": 1}]},
            "datasets[0]: unknown option 'sed' — did you mean 'seed'?",
        ),
        (
            {"backbones": [{"name": "smallcnn", "width": "wide"}]},
            "backbones[0].width: expected an integer, got 'wide'",
        ),
        (
            {"backbones": [{"name": "smallcnn", "num_classes": 3}]},
            "backbones[0].num_classes: set by mlcbench from the dataset; remove it",
        ),
        # Value ranges of losses are checked by building them, before anything trains.
        ({"losses": [{"name": "focal", "gamma": -1}]}, "losses[0]: focal.gamma: must be ≥ 0"),
        (
            {"losses": [{"name": "bce+any_class", "any_class": {"beta": 2}}]},
            "losses[0]: any_class.beta: must lie in [0, 1]",
        ),
        (
            {"backbones": ["timm/*"]},
            "backbones[0]: 'timm/*' names a family; write timm/<model>",
        ),
    ],
)
def test_plugin_mistakes_name_their_place(
    minimal_raw: dict[str, Any], plugins: Plugins, changes: dict[str, Any], message: str
) -> None:
    assert grid_error({**minimal_raw, **changes}, plugins).startswith(message)


def test_errors_from_a_loaded_spec_start_with_its_path(tmp_path: Path, plugins: Plugins) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        "name: typo\ndatasets: [negdigits]\nbackbones: [smallcnn]\nlosses: [bce, focall]\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as caught:
        expand(load_spec(path), plugins)
    assert str(caught.value).startswith(
        f"{path}: losses[1]: unknown loss 'focall' — did you mean 'focal'?"
    )


def test_a_timm_typo_fails_with_a_suggestion(minimal_raw: dict[str, Any], plugins: Plugins) -> None:
    pytest.importorskip("timm")
    message = grid_error({**minimal_raw, "backbones": ["timm/resnt18"]}, plugins)
    assert message.startswith(
        "backbones[0]: unknown timm model 'resnt18' — did you mean 'resnet18'?"
    )
    assert len(message) < 400  # not the whole list of timm models
    (cell,) = expand(parse_spec({**minimal_raw, "backbones": ["timm/resnet18"]}), plugins)
    assert cell.backbone.variant == "resnet18"
    assert cell.backbone.options == {"pretrained": False}


def test_the_same_configuration_twice_is_rejected(
    minimal_raw: dict[str, Any], plugins: Plugins
) -> None:
    same_dataset = {
        **minimal_raw,
        "datasets": ["negdigits", {"name": "negdigits", "seed": 0, "label": "again"}],
    }
    assert grid_error(same_dataset, plugins) == (
        "datasets[1], backbones[0], losses[0]: same configuration as "
        "datasets[0], backbones[0], losses[0]; remove the repeated entry"
    )
    same_loss = {**minimal_raw, "losses": ["focal", {"name": "focal", "gamma": 2, "label": "f2"}]}
    assert grid_error(same_loss, plugins).startswith(
        "datasets[0], backbones[0], losses[1]: same configuration as datasets[0], backbones[0], "
        "losses[0]"
    )


def test_data_folders_from_variables_leave_cell_ids_alone() -> None:
    """The same spec on two machines, with the data in different folders, gives one id."""
    import types

    from mlcbench.hookspecs import hookimpl
    from mlcbench.plugin_manager import Provider, load_plugins
    from mlcbench.spec import parse_spec

    def folder_dataset(*, root: str, size: int = 8) -> None:
        """A dataset read from a folder."""

    module = types.SimpleNamespace(
        mlcbench_register_datasets=hookimpl(lambda register: register("folders", folder_dataset))
    )
    plugins = load_plugins([(module, Provider("folders", "folders-dist", "1.0"))])
    raw = {
        "name": "portable",
        "datasets": [{"name": "folders", "root": "${DATA}/set"}],
        "backbones": ["smallcnn"],
        "losses": ["bce"],
    }
    here = expand(parse_spec(raw, variables={"DATA": "/mnt/a"}), plugins)
    there = expand(parse_spec(raw, variables={"DATA": "/scratch/b"}), plugins)
    assert [c.id for c in here] == [c.id for c in there]
    assert here[0].dataset.options["root"] == "/mnt/a/set"  # what the plugin receives
    assert here[0].config["dataset"]["options"] == {"root": "${DATA}/set", "size": 8}
    moved = expand(parse_spec({**raw, "datasets": [{"name": "folders", "root": "/x"}]}), plugins)
    assert moved[0].id != here[0].id  # a literal path is part of the identity


def test_runtime_options_of_a_dataset_leave_cell_ids_alone(plugins: Plugins) -> None:
    """Switching the decoded-image cache keeps every result; skipping images does not."""
    from mlcbench.spec import parse_spec

    def ids(**options: Any) -> list[str]:
        raw = {
            "name": "cached",
            "datasets": [
                {"name": "coco", "annotations": "/data/a", "images": "/data/i", **options}
            ],
            "backbones": ["smallcnn"],
            "losses": ["bce"],
        }
        return [cell.id for cell in expand(parse_spec(raw), plugins)]

    assert plugins.datasets.get("coco").runtime_options == frozenset({"cache"})
    assert ids(cache=True) == ids(cache=False) == ids()
    assert ids(skip_unreadable=True) != ids()


def test_a_runtime_option_the_factory_lacks_is_a_plugin_error() -> None:
    import types

    from mlcbench.hookspecs import hookimpl
    from mlcbench.plugin_manager import Provider, load_plugins

    def dataset(*, root: str) -> None:
        """A dataset without a cache."""

    module = types.SimpleNamespace(
        mlcbench_register_datasets=hookimpl(
            lambda register: register("nocache", dataset, runtime_options=["cache"])
        )
    )
    plugins = load_plugins([(module, Provider("nocache", "nocache-dist", "1.0"))])
    assert "nocache" not in plugins.datasets
    (failure,) = [f for f in plugins.failures if f.provider.distribution == "nocache-dist"]
    assert "runtime_options ['cache'] are not options of its factory" in failure.error
