"""Benchmark specs: YAML in, frozen and checked dataclasses out.

This module checks the *shape* of a spec (keys, types, loss syntax). Whether the named
plugins exist and accept the given options is checked by :mod:`mlcbench.grid`, which has the
plugin registries; both run before anything trains.

String values may name variables, so a spec need not hard-code where data lives:
``${NAME}`` takes the value from ``--var NAME=VALUE`` or else the environment,
``${NAME:-default}`` falls back to a default, ``${NAME:?what it is}`` says in the error what
to set it to, and ``$$`` is a literal ``$``. An unset variable fails with one line that
names its place and the variable.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from mlcbench.errors import SpecError
from mlcbench.options import coerce, reject_unknown_keys, unknown_key_error

if TYPE_CHECKING:
    from mlcbench.tune_spec import TuneConfig

#: Class balancing by effective number of samples is on by default, as in the paper.
DEFAULT_CLASS_BALANCE_BETA = 0.9999
LOSS_JOINER = "+"
MAX_SEED = 2**32 - 1
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: ``$$``, ``${NAME}``, ``${NAME:-default}``, ``${NAME:?hint}``, or (last) anything else
#: that starts like a reference, which is an error.
_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bad>\$\{[^}]*\}?)"
)
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Reference metrics as written in a spec → the metric names of ``metrics.json``.
REFERENCE_METRICS = {
    "f1": "macro_f1",
    "f2": "macro_f2",
    "ciw_f2": "ciw_f2",
    "map": "map",
    "f1_neg": "f1_neg",
}


@dataclass(frozen=True)
class PluginSpec:
    """A plugin named in a spec, with the options written for it."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    #: The name shown in leaderboards; defaults to ``name``.
    label: str = ""
    #: Where it was written, e.g. ``datasets[0]``; used in error messages only.
    where: str = field(default="", compare=False)
    #: Options that named ``${VARIABLES}``, as written before substitution: a cell's id uses
    #: these, so data kept in different folders on different machines gives the same ids.
    written: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def display_name(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class LossSpec:
    """A base loss plus any auxiliary terms, e.g. ``focal+any_class``."""

    #: The parts in order: the base loss first, then auxiliary terms.
    parts: tuple[PluginSpec, ...]
    #: β of class balancing by effective number of samples; None switches balancing off.
    class_balance: float | None = DEFAULT_CLASS_BALANCE_BETA
    #: The name shown in leaderboards; defaults to the joined part names.
    label: str = ""
    where: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        return LOSS_JOINER.join(part.name for part in self.parts)

    @property
    def display_name(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class TrainConfig:
    """How every cell trains. Fields marked *runtime* do not change results and stay out of
    the cell id, so the same spec gives the same ids on any machine."""

    #: Passes over the training split.
    epochs: int = 10
    #: Images per optimisation step (per device).
    batch_size: int = 64
    #: ``adamw``, ``adam`` or ``sgd`` (with ``momentum``).
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    #: Peak learning rate, reached after the warm-up.
    lr: float = 1e-3
    #: Decoupled weight decay for adamw, L2 for adam and sgd.
    weight_decay: float = 0.05
    #: Momentum of sgd.
    momentum: float = 0.9
    #: ``cosine`` decays from ``lr`` to ``min_lr`` after the warm-up; ``constant`` keeps ``lr``.
    scheduler: Literal["cosine", "constant"] = "cosine"
    #: Epochs of linear warm-up from ``lr / 100`` (may be fractional).
    warmup_epochs: float = 0.0
    #: Learning rate at the end of the cosine schedule.
    min_lr: float = 1e-5
    #: ``auto`` = 16-bit mixed precision on a GPU (bf16 where supported), 32-bit on the CPU;
    #: or any Lightning precision such as ``32-true``, ``16-mixed``, ``bf16-mixed``.
    precision: Literal[
        "auto", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"
    ] = "auto"
    #: Clip the gradient norm to this value; null switches clipping off.
    gradient_clip: float | None = 1.0
    #: Runtime: Lightning accelerator (``auto`` picks the GPU when there is one).
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"] = "auto"
    #: Runtime: devices per cell (``auto``, a count, or a list of indices).
    devices: int | str | list[int] = "auto"
    #: Runtime: Lightning strategy for a cell on several devices, e.g. ``ddp``; ``auto`` lets
    #: Lightning choose. A cell launches its other processes by spawning (see
    #: ``distributed.lightning_strategy``), ``batch_size`` is per process.
    strategy: str = "auto"
    #: Runtime: machines one cell trains on (each started by the cluster's launcher).
    num_nodes: int = 1
    #: Runtime: DataLoader workers; ``auto`` = one per CPU core (at most 8), or none when the
    #: dataset already sits in memory.
    num_workers: int | Literal["auto"] = "auto"

    RUNTIME_FIELDS: typing.ClassVar[frozenset[str]] = frozenset(
        {"accelerator", "devices", "strategy", "num_nodes", "num_workers"}
    )

    def identity(self) -> dict[str, Any]:
        """The fields that change results: part of every cell id."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in self.RUNTIME_FIELDS
        }


@dataclass(frozen=True)
class ReferenceRow:
    """One published result for a dataset × backbone × loss; metrics in percent."""

    #: A dataset of the spec, by its display name (label or plugin name).
    dataset: str
    #: The backbone as the source names it, e.g. ``TResNet-L``.
    backbone: str
    #: The loss as the source names it, e.g. ``bce+any_class``.
    loss: str
    #: Macro F1.
    f1: float | None = None
    #: Macro F2.
    f2: float | None = None
    #: Class-importance-weighted F2 (Sewer-ML).
    ciw_f2: float | None = None
    #: Mean average precision.
    map: float | None = None
    #: F1 of the image-level "nothing fires" decision.
    f1_neg: float | None = None
    where: str = field(default="", compare=False)

    def metrics(self) -> dict[str, float]:
        """The metrics given, keyed by their ``metrics.json`` names, in percent."""
        return {
            REFERENCE_METRICS[key]: value
            for key in REFERENCE_METRICS
            if (value := getattr(self, key)) is not None
        }


@dataclass(frozen=True)
class ReferenceResults:
    """Published numbers a leaderboard may show beside measured ones, labelled as reference."""

    #: Where the numbers come from (paper, table).
    source: str
    rows: tuple[ReferenceRow, ...]
    #: The split they were measured on.
    split: Literal["train", "val", "test"] = "val"
    #: The fixed decision threshold they were measured at.
    threshold: float = 0.5
    note: str = ""


@dataclass(frozen=True)
class BenchmarkSpec:
    """A whole benchmark: every dataset × backbone × loss × seed is one cell."""

    #: Names the output folder and the leaderboard file; letters, digits, ``_ . -``.
    name: str
    datasets: tuple[PluginSpec, ...]
    backbones: tuple[PluginSpec, ...]
    losses: tuple[LossSpec, ...]
    #: Seeds of the repeated runs (an integer N means seeds 0 … N−1).
    seeds: tuple[int, ...] = (0,)
    train: TrainConfig = field(default_factory=TrainConfig)
    description: str = ""
    #: The file it came from, for messages.
    source: str = field(default="<spec>", compare=False)
    #: Published numbers to show as reference rows (optional).
    reference: tuple[ReferenceResults, ...] = ()
    #: Where cells run (runtime only: never part of a cell id).
    executor: ExecutorConfig = field(default_factory=lambda: ExecutorConfig())
    #: Experiment tracking besides the CSV logs (runtime only).
    logging: LoggingConfig = field(default_factory=lambda: LoggingConfig())
    #: What ``mlcbench tune`` searches (optional; never part of a cell id).
    tune: TuneConfig | None = None


@dataclass(frozen=True)
class ExecutorConfig:
    """``executor: local`` or ``executor: {name: ray, address: auto, gpus_per_cell: 1}``."""

    #: ``local``: cells one after another on this machine; ``ray``: cells as Ray tasks.
    name: Literal["local", "ray"] = "local"
    #: Ray cluster address (``auto``, ``ray://host:10001``); null starts a local instance.
    address: str | None = None
    #: CPUs each Ray task asks for.
    cpus_per_cell: float = 1.0
    #: GPUs each Ray task asks for.
    gpus_per_cell: float = 0.0


@dataclass(frozen=True)
class WandbConfig:
    """``logging: {wandb: {project: ..., entity: ..., mode: online|offline|disabled}}``."""

    project: str
    entity: str | None = None
    mode: Literal["online", "offline", "disabled"] = "online"


@dataclass(frozen=True)
class LoggingConfig:
    #: Log every cell to Weights & Biases too.
    wandb: WandbConfig | None = None


def load_spec(path: str | Path, variables: Mapping[str, str] | None = None) -> BenchmarkSpec:
    """Read and check a benchmark spec file; ``variables`` override the environment."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file; check the path (see benchmarks/*.yaml)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "malformed YAML"
        raise SpecError(f"{path}: not valid YAML{at}: {problem}") from None
    try:
        return parse_spec(raw, source=str(path), variables=variables)
    except SpecError as error:
        raise SpecError(f"{path}: {error}") from None


def parse_spec(
    raw: Any, *, source: str = "<spec>", variables: Mapping[str, str] | None = None
) -> BenchmarkSpec:
    """Check a spec already parsed from YAML (a mapping); fill in ``${VAR}`` references from
    ``variables``, then the environment."""
    if not isinstance(raw, Mapping):
        raise SpecError("a spec is a mapping with keys name, datasets, backbones, losses, …")
    written = raw
    raw = interpolate(raw, variables)
    known = (
        "name",
        "description",
        "datasets",
        "backbones",
        "losses",
        "seeds",
        "train",
        "reference",
        "executor",
        "logging",
        "tune",
    )
    reject_unknown_keys(raw, known, "spec")
    for key in ("name", "datasets", "backbones", "losses"):
        if key not in raw:
            raise SpecError(f"{key}: missing; every spec needs name, datasets, backbones, losses")
    name = coerce(raw["name"], str, "name")
    if not _SAFE_NAME.match(name):
        raise SpecError(f"name: {name!r} may hold only letters, digits, '_', '.', '-'")
    losses = tuple(parse_loss(item, f"losses[{i}]") for i, item in enumerate(_list(raw, "losses")))
    _reject_duplicate_labels(losses)
    # Leaderboard rows are keyed by backbone and loss names, so two backbones may not share one.
    backbones = _with_written_options(_plugins(raw, "backbones"), written, "backbones")
    _reject_duplicate_labels(backbones)
    datasets = _with_written_options(_plugins(raw, "datasets"), written, "datasets")
    reference = raw.get("reference")
    seeds = _seeds(raw.get("seeds", [0]))
    tune = raw.get("tune")
    return BenchmarkSpec(
        name=name,
        description=coerce(raw.get("description", ""), str, "description"),
        datasets=datasets,
        backbones=backbones,
        losses=losses,
        seeds=seeds,
        train=parse_train({} if raw.get("train") is None else raw["train"]),
        source=source,
        reference=() if reference is None else parse_reference(reference, datasets),
        executor=parse_executor(raw.get("executor", "local")),
        logging=parse_logging(raw.get("logging") or {}),
        tune=None if tune is None else _parse_tune(tune, datasets, backbones, losses, seeds),
    )


def _checked_fields(cls: Any, raw: Any, where: str, what: str = "key") -> dict[str, Any]:
    """The fields of config dataclass ``cls`` given in mapping ``raw``, keys and types
    checked: an unknown key gets a suggestion, a wrong type names its place."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in names:
            raise unknown_key_error(str(key), names, where, what)
        values[key] = coerce(value, hints[key], f"{where}.{key}")
    return values


def _dataclass_from(cls: Any, raw: Any, where: str) -> Any:
    """Build a frozen config dataclass from a mapping; required fields must be there."""
    values = _checked_fields(cls, raw, where)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise SpecError(f"{where}: missing {', '.join(missing)}")
    return cls(**values)


def parse_executor(raw: Any) -> ExecutorConfig:
    if isinstance(raw, str):
        raw = {"name": raw}
    config: ExecutorConfig = _dataclass_from(ExecutorConfig, raw, "executor")
    return config


def parse_logging(raw: Any) -> LoggingConfig:
    if not isinstance(raw, Mapping):
        raise SpecError(
            f"logging: expected a mapping such as {{wandb: {{project: x}}}}, got {raw!r}"
        )
    reject_unknown_keys(raw, ["wandb"], "logging", "logger")
    wandb = raw.get("wandb")
    return LoggingConfig(
        None if wandb is None else _dataclass_from(WandbConfig, wandb, "logging.wandb")
    )


def _with_written_options(
    plugins: tuple[PluginSpec, ...], written: Mapping[str, Any], key: str
) -> tuple[PluginSpec, ...]:
    """Attach, to each plugin, the options whose written form differs (held a variable)."""
    entries = written.get(key)
    if isinstance(entries, str | Mapping) or not isinstance(entries, list):
        entries = [entries]
    result = []
    for plugin, entry in zip(plugins, entries, strict=False):
        before = entry if isinstance(entry, Mapping) else {}
        changed = {
            name: before[name]
            for name, value in plugin.options.items()
            if name in before and before[name] != value
        }
        result.append(dataclasses.replace(plugin, written=changed) if changed else plugin)
    return tuple(result)


def interpolate(raw: Any, variables: Mapping[str, str] | None = None, where: str = "") -> Any:
    """``raw`` with every ``${VAR}`` in its string values replaced (see the module doc).

    ``variables`` take precedence over the environment. Keys are left alone; substituted
    text is not scanned again.
    """
    if isinstance(raw, str):
        return _substitute(raw, variables or {}, where or "spec")
    if isinstance(raw, Mapping):
        return {
            key: interpolate(value, variables, f"{where}.{key}" if where else str(key))
            for key, value in raw.items()
        }
    if isinstance(raw, list):
        return [interpolate(item, variables, f"{where}[{i}]") for i, item in enumerate(raw)]
    return raw


def _substitute(text: str, variables: Mapping[str, str], where: str) -> str:
    if "$" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group("bad") is not None:
            raise SpecError(
                f"{where}: malformed variable reference {match.group('bad')!r}; write ${{NAME}}, "
                "${NAME:-default} or ${NAME:?description}, and $$ for a literal $"
            )
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = variables.get(name, os.environ.get(name))
        if value:
            return value
        if op == "-":
            return arg or ""
        state = "is not set" if value is None else "is empty"
        target = f"set it to {arg.strip()}," if op == "?" and arg.strip() else "set it"
        raise SpecError(
            f"{where}: environment variable {name} {state}; {target} or pass --var {name}=VALUE"
        )

    return _VARIABLE.sub(replace, text)


def parse_variables(assignments: Iterable[str]) -> dict[str, str]:
    """``["NAME=VALUE", ...]`` (from ``--var``) as a mapping; the last of a repeated name wins."""
    variables: dict[str, str] = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals or not _VARIABLE_NAME.match(name):
            raise SpecError(f"--var: expected NAME=VALUE, got {assignment!r}")
        variables[name] = value
    return variables


def parse_reference(raw: Any, datasets: tuple[PluginSpec, ...]) -> tuple[ReferenceResults, ...]:
    """``reference``: one block (a mapping) or a list of blocks of published numbers."""
    if isinstance(raw, Mapping):
        return (_reference_block(raw, "reference", datasets),)
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"reference: expected a mapping (or a list of them), got {raw!r}")
    return tuple(
        _reference_block(block, f"reference[{i}]", datasets) for i, block in enumerate(raw)
    )


def _reference_block(raw: Any, where: str, datasets: tuple[PluginSpec, ...]) -> ReferenceResults:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a mapping with source and rows, got {raw!r}")
    known = ("source", "split", "threshold", "note", "rows")
    reject_unknown_keys(raw, known, where)
    for key in ("source", "rows"):
        if key not in raw:
            raise SpecError(f"{where}: missing {key!r}; a reference needs source and rows")
    source = coerce(raw["source"], str, f"{where}.source")
    if not source.strip():
        raise SpecError(f"{where}.source: say where the numbers come from")
    threshold = coerce(raw.get("threshold", 0.5), float, f"{where}.threshold")
    if not 0.0 < threshold < 1.0:
        raise SpecError(f"{where}.threshold: must lie in (0, 1), got {threshold}")
    rows_raw = raw["rows"]
    if not isinstance(rows_raw, list) or not rows_raw:
        raise SpecError(f"{where}.rows: expected a non-empty list, got {rows_raw!r}")
    names = [dataset.display_name for dataset in datasets]
    rows: list[ReferenceRow] = []
    seen: dict[tuple[str, str, str], str] = {}
    for index, row in enumerate(rows_raw):
        row_where = f"{where}.rows[{index}]"
        parsed = _reference_row(row, row_where, names)
        identity = (parsed.dataset, parsed.backbone, parsed.loss)
        if identity in seen:
            raise SpecError(f"{row_where}: repeats {seen[identity]} (same dataset, backbone, loss)")
        seen[identity] = row_where
        rows.append(parsed)
    return ReferenceResults(
        source=source,
        rows=tuple(rows),
        split=coerce(raw.get("split", "val"), Literal["train", "val", "test"], f"{where}.split"),
        threshold=threshold,
        note=coerce(raw.get("note", ""), str, f"{where}.note"),
    )


def _reference_row(raw: Any, where: str, dataset_names: list[str]) -> ReferenceRow:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a mapping with dataset, backbone, loss, metrics")
    known = ("dataset", "backbone", "loss", *REFERENCE_METRICS)
    reject_unknown_keys(raw, known, where)
    texts = {}
    for key in ("dataset", "backbone", "loss"):
        if key not in raw:
            raise SpecError(f"{where}: missing {key!r}")
        texts[key] = coerce(raw[key], str, f"{where}.{key}").strip()
        if not texts[key]:
            raise SpecError(f"{where}.{key}: empty")
    if texts["dataset"] not in dataset_names:
        raise unknown_key_error(texts["dataset"], dataset_names, f"{where}.dataset", "dataset")
    metrics: dict[str, Any] = {}
    for key in REFERENCE_METRICS:
        if key in raw:
            value = coerce(raw[key], float, f"{where}.{key}")
            if not 0.0 <= value <= 100.0:
                raise SpecError(f"{where}.{key}: a percentage in [0, 100], got {value}")
            metrics[key] = value
    if not metrics:
        raise SpecError(f"{where}: give at least one of {', '.join(REFERENCE_METRICS)}")
    row = ReferenceRow(texts["dataset"], texts["backbone"], texts["loss"], where=where)
    return dataclasses.replace(row, **metrics)


def parse_train(raw: Any) -> TrainConfig:
    if not isinstance(raw, Mapping):
        raise SpecError(f"train: expected a mapping of training settings, got {raw!r}")
    values = _checked_fields(TrainConfig, raw, "train", "setting")
    for key in ("epochs", "batch_size", "num_nodes"):
        if key in values and values[key] < 1:
            raise SpecError(f"train.{key}: must be at least 1, got {values[key]}")
    for key in ("lr", "weight_decay", "min_lr", "warmup_epochs", "momentum"):
        if key in values and values[key] < 0:
            raise SpecError(f"train.{key}: must not be negative, got {values[key]}")
    devices = values.get("devices")
    if isinstance(devices, int) and not (devices >= 1 or devices == -1):
        raise SpecError(f"train.devices: a count of at least 1 (or -1 for all), got {devices}")
    if isinstance(devices, list):
        if not devices or any(not isinstance(d, int) or d < 0 for d in devices):
            raise SpecError(f"train.devices: a list of device indices (0, 1, …), got {devices}")
        values["devices"] = tuple(devices)
    if values.get("strategy", "auto") != "auto":
        _check_strategy(values["strategy"])
    return TrainConfig(**values)


def _check_strategy(name: str) -> None:
    """A typo in ``train.strategy`` fails here, not hours later when its cell starts."""
    from pytorch_lightning.strategies import StrategyRegistry

    known = StrategyRegistry.available_strategies()
    if name not in known:
        raise unknown_key_error(name, ["auto", *known], "train.strategy", "Lightning strategy")


def parse_plugin(raw: Any, where: str) -> PluginSpec:
    """``name`` or ``{name: ..., label: ..., option: value, ...}``."""
    if isinstance(raw, str):
        return PluginSpec(_plugin_name(raw, where), {}, "", where)
    if isinstance(raw, Mapping):
        if "name" not in raw:
            raise SpecError(f"{where}: a mapping entry needs a 'name' key")
        options = {k: v for k, v in raw.items() if k not in ("name", "label")}
        label = coerce(raw.get("label", ""), str, f"{where}.label")
        return PluginSpec(_plugin_name(raw["name"], f"{where}.name"), options, label, where)
    raise SpecError(f"{where}: expected a plugin name or a mapping with 'name', got {raw!r}")


def parse_loss(raw: Any, where: str = "loss") -> LossSpec:
    """Read a loss as written in YAML.

    Forms: ``focal``, ``focal+any_class``, or a mapping
    ``{name: focal+any_class, focal: {gamma: 1}, any_class: {weight: 0.5},
    class_balance: 0.999 | false, label: ...}``. A single-part loss may also take its
    options flat: ``{name: focal, gamma: 1}``.
    """
    if isinstance(raw, str):
        return LossSpec(parts=_loss_parts(raw, {}, where), where=where)
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a loss name or a mapping with 'name', got {raw!r}")
    if "name" not in raw:
        raise SpecError(f"{where}: a loss mapping needs a 'name' key, e.g. name: focal+any_class")
    name = coerce(raw["name"], str, f"{where}.name")
    rest = {k: v for k, v in raw.items() if k not in ("name", "class_balance", "label")}
    part_names = [p.strip() for p in name.split(LOSS_JOINER)]
    flat_options = len(part_names) == 1 and set(rest) != {part_names[0]}
    if flat_options:
        per_part = {part_names[0]: rest}
    else:
        for key, value in rest.items():
            if key not in part_names:
                raise unknown_key_error(str(key), part_names, where, "loss part")
            if not isinstance(value, Mapping):
                raise SpecError(f"{where}.{key}: expected a mapping of options, got {value!r}")
        per_part = {k: dict(v) for k, v in rest.items()}
    return LossSpec(
        parts=_loss_parts(name, per_part, where),
        class_balance=_class_balance(raw.get("class_balance", True), f"{where}.class_balance"),
        label=coerce(raw.get("label", ""), str, f"{where}.label"),
        where=where,
    )


def _loss_parts(name: str, options: Mapping[str, Any], where: str) -> tuple[PluginSpec, ...]:
    parts = [p.strip() for p in name.split(LOSS_JOINER)]
    if any(not p for p in parts):
        raise SpecError(f"{where}: {name!r} has an empty part; write e.g. 'focal+any_class'")
    if len(set(parts)) != len(parts):
        raise SpecError(f"{where}: {name!r} names a part twice")
    return tuple(PluginSpec(_plugin_name(p, where), options.get(p, {}), "", where) for p in parts)


def _class_balance(value: Any, where: str) -> float | None:
    if value is True:
        return DEFAULT_CLASS_BALANCE_BETA
    if value is False or value is None:
        return None
    beta = coerce(value, float, where)
    if not 0.0 <= beta < 1.0:
        raise SpecError(f"{where}: β must lie in [0, 1) (or be false to switch off), got {beta}")
    return beta


def _plugin_name(value: Any, where: str) -> str:
    name = coerce(value, str, where)
    if not name.strip():
        raise SpecError(f"{where}: empty plugin name")
    return name.strip()


def _list(raw: Mapping[str, Any], key: str) -> list[Any]:
    value = raw[key]
    if isinstance(value, str | Mapping):
        value = [value]
    if not isinstance(value, list) or not value:
        raise SpecError(f"{key}: expected a non-empty list, got {value!r}")
    return value


def _plugins(raw: Mapping[str, Any], key: str) -> tuple[PluginSpec, ...]:
    return tuple(parse_plugin(item, f"{key}[{i}]") for i, item in enumerate(_list(raw, key)))


def _seeds(value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise SpecError(f"seeds: a count must be at least 1, got {value}")
        return tuple(range(value))
    seeds = coerce(value, list[int], "seeds")
    if not seeds:
        raise SpecError("seeds: expected a non-empty list of integers or a count")
    for index, seed in enumerate(seeds):
        # The range every RNG seeder (numpy, Lightning) accepts; caught here, not mid-run.
        if not 0 <= seed <= MAX_SEED:
            raise SpecError(f"seeds[{index}]: must lie in 0 … {MAX_SEED}, got {seed}")
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"seeds: {seeds} repeats a seed")
    return tuple(seeds)


def _reject_duplicate_labels(entries: tuple[LossSpec, ...] | tuple[PluginSpec, ...]) -> None:
    seen: dict[str, str] = {}
    for entry in entries:
        label = entry.display_name
        if label in seen:
            raise SpecError(
                f"{entry.where}: {label!r} is already used by {seen[label]}; "
                "give one of them a distinct 'label'"
            )
        seen[label] = entry.where


def _parse_tune(raw: Any, *context: Any) -> TuneConfig:
    # tune_spec builds on this module's dataclasses, so it is imported when needed.
    from mlcbench.tune_spec import parse_tune

    return parse_tune(raw, *context)
