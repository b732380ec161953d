"""The ``tune:`` block of a spec: what ``mlcbench tune`` searches, checked when the spec
loads. Option names and values are checked against the loss plugins by
:mod:`mlcbench.tuning`, before anything trains."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlcbench.errors import SpecError
from mlcbench.options import coerce, reject_unknown_keys, unknown_key_error
from mlcbench.spec import (
    MAX_SEED,
    LossSpec,
    PluginSpec,
    _class_balance,
    _dataclass_from,
    _seeds,
)

#: The option of a loss spec that ``tune.space`` may search besides the parts' options.
CLASS_BALANCE = "class_balance"


@dataclass(frozen=True)
class SearchRange:
    """One entry of ``tune.space``: a range ``{low, high, log}`` or a list of ``choices``."""

    #: What it sets: ``<part>.<option>`` of the tuned loss (``any_class.weight``) or
    #: ``class_balance``.
    name: str
    #: Inclusive bounds of a range, as written (an integer option gets integers).
    low: float | None = None
    high: float | None = None
    #: Sample the range uniformly in log space (both bounds > 0).
    log: bool = False
    #: The values to choose from instead of a range; for ``class_balance`` None means off.
    choices: tuple[Any, ...] = ()
    where: str = field(default="", compare=False)

    @property
    def part(self) -> str | None:
        """The loss part whose option this sets; None for ``class_balance``."""
        return None if self.name == CLASS_BALANCE else self.name.partition(".")[0]

    @property
    def option(self) -> str:
        return self.name.partition(".")[2] if self.part else self.name


@dataclass(frozen=True)
class PrunerConfig:
    """``tune.pruner``: stop a trial whose val mAP falls below the median of earlier trials'
    at the same epoch."""

    #: Trials that run to the end before any trial is pruned.
    startup_trials: int = 4
    #: Epochs at the start of every trial that are never pruned.
    warmup_epochs: int = 2


@dataclass(frozen=True)
class TuneConfig:
    """``tune``: which loss of the spec ``mlcbench tune`` searches, on which dataset and
    backbone, over which space. Runtime only: it never changes a cell id."""

    #: The tuned loss (default: the first loss with an auxiliary term).
    loss: LossSpec
    #: The dataset and backbone every trial trains (default: the spec's first of each).
    dataset: PluginSpec
    backbone: PluginSpec
    #: The searched options, in the order written.
    space: tuple[SearchRange, ...]
    #: Seeds each trial trains; its objective is the mean of their best val mAPs
    #: (default: the spec's first seed).
    seeds: tuple[int, ...] = (0,)
    #: Seed of the TPE sampler: the same study samples the same values.
    sampler_seed: int = 0
    #: Trials sampled at random before TPE models the results (Optuna's default).
    sampler_startup_trials: int = 10
    #: Median pruning on val mAP per epoch; None (``pruner: false``) lets every trial finish.
    pruner: PrunerConfig | None = field(default_factory=PrunerConfig)


def parse_tune(
    raw: Any,
    datasets: tuple[PluginSpec, ...],
    backbones: tuple[PluginSpec, ...],
    losses: tuple[LossSpec, ...],
    seeds: tuple[int, ...],
) -> TuneConfig:
    """``tune``: the loss, dataset and backbone to tune (by label or name), the search
    ``space``, the trial seeds, the sampler and the pruner. Option names and values are
    checked against the loss plugins by :mod:`mlcbench.tuning`, before anything trains."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"tune: expected a mapping with at least 'space', got {raw!r}")
    known = (
        "loss",
        "dataset",
        "backbone",
        "space",
        "seeds",
        "sampler_seed",
        "sampler_startup_trials",
        "pruner",
    )
    reject_unknown_keys(raw, known, "tune")
    if "space" not in raw:
        raise SpecError(
            "tune: missing 'space', e.g. "
            "space: {any_class.weight: {low: 0.05, high: 2.0, log: true}}"
        )
    with_auxiliary = [loss for loss in losses if len(loss.parts) > 1]
    default_loss = with_auxiliary[0] if with_auxiliary else None
    loss = _pick(raw.get("loss"), losses, default_loss, "tune.loss", "loss")
    sampler_seed = coerce(raw.get("sampler_seed", 0), int, "tune.sampler_seed")
    if not 0 <= sampler_seed <= MAX_SEED:
        raise SpecError(f"tune.sampler_seed: must lie in 0 … {MAX_SEED}, got {sampler_seed}")
    startup = coerce(raw.get("sampler_startup_trials", 10), int, "tune.sampler_startup_trials")
    if startup < 0:
        raise SpecError(f"tune.sampler_startup_trials: must not be negative, got {startup}")
    return TuneConfig(
        loss=loss,
        dataset=_pick(raw.get("dataset"), datasets, datasets[0], "tune.dataset", "dataset"),
        backbone=_pick(raw.get("backbone"), backbones, backbones[0], "tune.backbone", "backbone"),
        space=_search_space(raw["space"], loss),
        seeds=_tune_seeds(raw["seeds"]) if "seeds" in raw else seeds[:1],
        sampler_seed=sampler_seed,
        sampler_startup_trials=startup,
        pruner=_pruner(raw.get("pruner", True)),
    )


def _pick(
    value: Any,
    entries: tuple[LossSpec, ...] | tuple[PluginSpec, ...],
    default: Any,
    where: str,
    what: str,
) -> Any:
    """The entry named ``value`` (its label first, then its plugin name), or ``default``."""
    if value is None:
        if default is None:
            raise SpecError(
                f"{where}: no {what} of the spec has an auxiliary term; name the one to tune"
            )
        return default
    name = coerce(value, str, where)
    by_label = [entry for entry in entries if entry.display_name == name]
    by_name = [entry for entry in entries if entry.name == name]
    if by_label or by_name:
        return (by_label or by_name)[0]
    known = {entry.display_name for entry in entries} | {entry.name for entry in entries}
    raise unknown_key_error(name, sorted(known), where, what)


def _tune_seeds(value: Any) -> tuple[int, ...]:
    try:
        return _seeds(value)
    except SpecError as error:
        raise SpecError(f"tune.{error}") from None


def _pruner(value: Any) -> PrunerConfig | None:
    if value is False or value is None:
        return None
    if value is True:
        return PrunerConfig()
    config: PrunerConfig = _dataclass_from(PrunerConfig, value, "tune.pruner")
    for key in ("startup_trials", "warmup_epochs"):
        if getattr(config, key) < 0:
            raise SpecError(f"tune.pruner.{key}: must not be negative, got {getattr(config, key)}")
    return config


def _search_space(raw: Any, loss: LossSpec) -> tuple[SearchRange, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise SpecError(
            "tune.space: expected a mapping of <part>.<option> or class_balance to a range, "
            f"e.g. {{any_class.weight: {{low: 0.05, high: 2.0, log: true}}}}, got {raw!r}"
        )
    parts = [part.name for part in loss.parts]
    space = []
    for key, value in raw.items():
        name = coerce(key, str, "tune.space")
        where = f"tune.space.{name}"
        if name != CLASS_BALANCE:
            part, dot, option = name.partition(".")
            if not dot or not option:
                raise SpecError(
                    f"{where}: write <part>.<option> of loss {loss.display_name!r} "
                    f"(e.g. {parts[-1]}.<option>) or {CLASS_BALANCE}"
                )
            if part not in parts:
                raise unknown_key_error(part, [*parts, CLASS_BALANCE], where, "loss part")
        space.append(_search_range(name, value, where))
    return tuple(space)


def _search_range(name: str, raw: Any, where: str) -> SearchRange:
    if not isinstance(raw, Mapping):
        raise SpecError(
            f"{where}: expected {{low: …, high: …}} (with log: true for a log scale) "
            f"or {{choices: [...]}}, got {raw!r}"
        )
    for key in raw:
        if key not in ("low", "high", "log", "choices"):
            raise unknown_key_error(str(key), ("low", "high", "log", "choices"), where, "key")
    if "choices" in raw:
        if set(raw) != {"choices"}:
            raise SpecError(f"{where}: give either low and high or choices, not both")
        return SearchRange(name, choices=_choices(name, raw["choices"], where), where=where)
    if "low" not in raw or "high" not in raw:
        raise SpecError(f"{where}: a range needs low and high (or give choices)")
    low, high = raw["low"], raw["high"]
    for bound, value in (("low", low), ("high", high)):
        coerce(value, float, f"{where}.{bound}")
        if name == CLASS_BALANCE:
            _class_balance(value, f"{where}.{bound}")
    log = coerce(raw.get("log", False), bool, f"{where}.log")
    if not low < high:
        raise SpecError(f"{where}: low must be < high, got low {low}, high {high}")
    if log and low <= 0:
        raise SpecError(f"{where}: low must be > 0 with log: true, got {low}")
    return SearchRange(name, low=low, high=high, log=log, where=where)


def _choices(name: str, raw: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"{where}.choices: expected a non-empty list of values, got {raw!r}")
    choices: list[Any] = []
    for index, value in enumerate(raw):
        at = f"{where}.choices[{index}]"
        if value is not None and not isinstance(value, bool | int | float | str):
            raise SpecError(
                f"{at}: expected a number, a string, true, false or null, got {value!r}"
            )
        if name == CLASS_BALANCE:
            value = _class_balance(value, at)
        # 1 == 1.0 repeats a value, but true == 1 does not: compare booleans apart.
        if any(
            value == seen and isinstance(value, bool) == isinstance(seen, bool) for seen in choices
        ):
            raise SpecError(f"{at}: repeats {value!r}")
        choices.append(value)
    return tuple(choices)
