"""The tune block of a spec: defaults, every key, and one-line errors naming the place."""

from __future__ import annotations

from typing import Any

import pytest
from test_spec import spec_error

from mlcbench.spec import DEFAULT_CLASS_BALANCE_BETA, parse_spec

TUNED: dict[str, Any] = {
    "name": "tuned",
    "datasets": ["negdigits", {"name": "negdigits", "negative_share": 0.8, "label": "neg80"}],
    "backbones": ["smallcnn", {"name": "smallcnn", "width": 8, "label": "narrow"}],
    "losses": ["bce", "focal+any_class", {"name": "bce+any_class", "label": "any-bce"}],
    "seeds": [3, 4],
}
SPACE = {"any_class.weight": {"low": 0.05, "high": 2.0, "log": True}}


def tune_error(tune: Any) -> str:
    return spec_error({**TUNED, "tune": tune})


def test_a_spec_without_tune_has_none(minimal_raw: dict[str, Any]) -> None:
    assert parse_spec(minimal_raw).tune is None


def test_tune_defaults_pick_the_first_auxiliary_loss_dataset_backbone_and_seed() -> None:
    from mlcbench.tune_spec import PrunerConfig, SearchRange

    tune = parse_spec({**TUNED, "tune": {"space": SPACE}}).tune
    assert tune is not None
    assert tune.loss.name == "focal+any_class"
    assert (tune.dataset.display_name, tune.backbone.display_name) == ("negdigits", "smallcnn")
    assert tune.seeds == (3,)
    assert tune.space == (SearchRange("any_class.weight", 0.05, 2.0, log=True),)
    assert tune.space[0].part == "any_class" and tune.space[0].option == "weight"
    assert (tune.sampler_seed, tune.sampler_startup_trials) == (0, 10)
    assert tune.pruner == PrunerConfig(startup_trials=4, warmup_epochs=2)


def test_tune_picks_entries_by_label_or_name_and_reads_every_key() -> None:
    tune = parse_spec(
        {
            **TUNED,
            "tune": {
                "loss": "any-bce",
                "dataset": "neg80",
                "backbone": "narrow",
                "seeds": 2,
                "space": {
                    "any_class.beta": {"low": 0.01, "high": 1.0},
                    "class_balance": {"choices": [False, 0.99, True]},
                },
                "sampler_seed": 7,
                "sampler_startup_trials": 3,
                "pruner": False,
            },
        }
    ).tune
    assert tune is not None
    assert (tune.loss.display_name, tune.dataset.display_name) == ("any-bce", "neg80")
    assert tune.backbone.options == {"width": 8}
    assert tune.seeds == (0, 1)
    assert tune.space[1].choices == (None, 0.99, DEFAULT_CLASS_BALANCE_BETA)
    assert tune.space[1].part is None and tune.space[1].option == "class_balance"
    assert (tune.sampler_seed, tune.sampler_startup_trials, tune.pruner) == (7, 3, None)
    by_name = parse_spec({**TUNED, "tune": {"loss": "bce+any_class", "space": SPACE}}).tune
    assert by_name is not None and by_name.loss.display_name == "any-bce"


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        ([1], "tune: expected a mapping with at least 'space', got [1]"),
        ({"spaces": SPACE}, "tune: unknown key 'spaces' — did you mean 'space'?"),
        ({"loss": "focal+any_class"}, "tune: missing 'space', e.g. space: {any_class.weight:"),
        ({"space": {}}, "tune.space: expected a mapping of <part>.<option> or class_balance"),
        (
            {"space": {"any_clas.weight": {"low": 0.1, "high": 1}}},
            "tune.space.any_clas.weight: unknown loss part 'any_clas' — did you mean "
            "'any_class'? (known: any_class, class_balance, focal)",
        ),
        (
            {"space": {"weight": {"low": 0.1, "high": 1}}},
            "tune.space.weight: write <part>.<option> of loss 'focal+any_class' "
            "(e.g. any_class.<option>) or class_balance",
        ),
        (
            {"space": {"any_class.weight": {"low": 0, "high": 2, "log": True}}},
            "tune.space.any_class.weight: low must be > 0 with log: true, got 0",
        ),
        (
            {"space": {"any_class.weight": {"low": 2, "high": 0.5}}},
            "tune.space.any_class.weight: low must be < high, got low 2, high 0.5",
        ),
        (
            {"space": {"any_class.weight": {"low": "a", "high": 1}}},
            "tune.space.any_class.weight.low: expected a number, got 'a'",
        ),
        (
            {"space": {"any_class.weight": {"high": 1}}},
            "tune.space.any_class.weight: a range needs low and high (or give choices)",
        ),
        (
            {"space": {"any_class.weight": {"low": 0.1, "hi": 1}}},
            "tune.space.any_class.weight: unknown key 'hi' — did you mean 'high'?",
        ),
        (
            {"space": {"any_class.weight": 0.5}},
            "tune.space.any_class.weight: expected {low: …, high: …}",
        ),
        (
            {"space": {"any_class.weight": {"low": 0.1, "high": 1, "choices": [1]}}},
            "tune.space.any_class.weight: give either low and high or choices, not both",
        ),
        (
            {"space": {"any_class.weight": {"choices": []}}},
            "tune.space.any_class.weight.choices: expected a non-empty list of values, got []",
        ),
        (
            {"space": {"any_class.weight": {"choices": [0.5, [1]]}}},
            "tune.space.any_class.weight.choices[1]: expected a number, a string, true, false "
            "or null, got [1]",
        ),
        (
            {"space": {"any_class.weight": {"choices": [0.5, 1, 1.0]}}},
            "tune.space.any_class.weight.choices[2]: repeats 1.0",
        ),
        (
            {"space": {"class_balance": {"low": 0.9, "high": 1.0}}},
            "tune.space.class_balance.high: β must lie in [0, 1) (or be false to switch off)",
        ),
        (
            {"space": {"class_balance": {"choices": [False, None]}}},
            "tune.space.class_balance.choices[1]: repeats None",
        ),
        (
            {"loss": "any_bce", "space": SPACE},
            "tune.loss: unknown loss 'any_bce' — did you mean 'any-bce'? "
            "(known: any-bce, bce, bce+any_class, focal+any_class)",
        ),
        ({"dataset": "coco", "space": SPACE}, "tune.dataset: unknown dataset 'coco'"),
        ({"seeds": [1, 1], "space": SPACE}, "tune.seeds: [1, 1] repeats a seed"),
        ({"seeds": [-1], "space": SPACE}, "tune.seeds[0]: must lie in 0 …"),
        ({"sampler_seed": -1, "space": SPACE}, "tune.sampler_seed: must lie in 0 …"),
        ({"pruner": {"warmup": 1}, "space": SPACE}, "tune.pruner: unknown key 'warmup'"),
        (
            {"pruner": {"startup_trials": -1}, "space": SPACE},
            "tune.pruner.startup_trials: must not be negative, got -1",
        ),
    ],
)
def test_bad_tune_blocks_name_the_place(tune: Any, message: str) -> None:
    assert message in tune_error(tune)


def test_tune_needs_a_loss_with_an_auxiliary_term_or_a_name(minimal_raw: dict[str, Any]) -> None:
    space = {"class_balance": {"low": 0.9, "high": 0.999}}
    assert spec_error({**minimal_raw, "tune": {"space": space}}) == (
        "tune.loss: no loss of the spec has an auxiliary term; name the one to tune"
    )
    tune = parse_spec({**minimal_raw, "tune": {"loss": "bce", "space": space}}).tune
    assert tune is not None and tune.loss.name == "bce"
