"""``mlcbench tune``: search the options of one loss (the any-class term's α and λ, class
balancing's β) with Optuna, on validation mAP.

The spec's ``tune:`` block names the dataset × backbone × loss to tune, the search space and
the seeds each trial trains. A trial is an ordinary cell of that configuration — the same
grid, plugins, training and score files as ``mlcbench run`` — trained in this process under
``<out>/trials/<number>/``, which is laid out like a run's results directory. A Lightning
callback reports each epoch's val mAP to Optuna, whose median pruner stops a trial that falls
behind the earlier ones. The study lives in ``<out>/study.db``, so an interrupted search
resumes where it stopped. The test split never enters the objective.

Optuna is optional (``pip install 'mlcbench[tune]'``) and imported only when a study runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import math
import shutil
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcbench.errors import MlcbenchError, PluginError, SpecError
from mlcbench.text import duration
from mlcbench.tune_report import (
    BEST_FILE,
    REPORT_STEM,
    STUDY_FILE,
    TRIALS_DIR,
    TrialRow,
    best_loss_yaml,
    best_row,
    format_value,
    progress_line,
    row_of,
    state_counts,
    trial_rows,
    write_report,
)

if TYPE_CHECKING:
    import optuna

    from mlcbench.data import MultiLabelDataset
    from mlcbench.grid import ResolvedPlugin
    from mlcbench.plugin_manager import Plugins
    from mlcbench.spec import BenchmarkSpec, LossSpec, TrainConfig
    from mlcbench.tune_spec import SearchRange, TuneConfig

Echo = Callable[[str], None]

LOCK_FILE = ".tune.lock"
INSTALL_HINT = "mlcbench tune needs Optuna; install it with: pip install 'mlcbench[tune]'"
#: The study's record of what it searches; a different search may not reuse the study.
SEARCH_ATTRIBUTE = "mlcbench_search"
#: Failed trials in a row after which a study stops: then it is no longer bad luck.
MAX_FAILURES_IN_A_ROW = 3

EXAMPLES = """\
examples:
  mlcbench tune benchmarks/quickstart_tune.yaml --trials 12
  mlcbench tune benchmarks/quickstart_tune.yaml --trials 20   # 8 more trials, same study
  mlcbench tune my_spec.yaml --trials 40 --out runs/my-search --var DATA=/data/defects
"""


# ----------------------------------------------------------------------------- the command


def add_tune_parser(commands: Any, accept_debug: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``tune`` to the CLI's subcommands; ``accept_debug`` gives it the ``--debug`` flag."""
    tune = commands.add_parser(
        "tune",
        help="search a loss's options (any-class α and λ, class-balancing β) with Optuna",
        description="Search the options declared in SPEC's tune: block with Optuna (TPE "
        "sampler, median pruning on val mAP per epoch). Each trial trains one cell per tune "
        "seed; its objective is the mean best val mAP. The study is kept in OUT/study.db, so "
        "a re-run continues it; OUT/tune.md, tune.csv, tune.svg and best.yaml report it.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tune.add_argument("spec", type=Path, help="benchmark spec (YAML) with a tune: block")
    tune.add_argument(
        "--trials",
        type=_trial_count,
        required=True,
        metavar="N",
        help="run until the study holds N finished (complete or pruned) trials",
    )
    tune.add_argument("--out", type=Path, help="study folder (default runs/<name>-tune)")
    tune.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a spec variable ${NAME} (overrides the environment); repeatable",
    )
    tune.add_argument("--no-progress", action="store_true", help="hide the per-epoch progress bar")
    accept_debug(tune)


def _trial_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of trials, got {text!r}")
    return count


def run_tune_command(args: argparse.Namespace) -> int:
    from mlcbench.plugin_manager import default_plugins
    from mlcbench.spec import load_spec, parse_variables

    spec = load_spec(args.spec, parse_variables(args.var))
    import_optuna()
    plugins = default_plugins()
    for failure in plugins.failures:
        print(f"mlcbench: warning: {failure.message()}", file=sys.stderr)
    out_dir = args.out or Path("runs") / f"{spec.name}-tune"
    summary = tune(
        spec, plugins, out_dir=out_dir, trials=args.trials, progress=not args.no_progress
    )
    for line in summary.closing_lines():
        print(line)
    return 0


def import_optuna() -> Any:
    """Optuna, with its per-trial log lines silenced (the study prints its own)."""
    try:
        import optuna
    except ImportError:
        raise MlcbenchError(INSTALL_HINT) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# -------------------------------------------------------------------------- the search plan


@dataclass(frozen=True)
class TuneProblem:
    """What a study searches, checked against the plugins before anything trains."""

    #: The spec of one trial: the tuned dataset, backbone and loss, and the tune seeds.
    spec: BenchmarkSpec
    config: TuneConfig
    #: The tuned dataset, resolved: every trial trains on it.
    dataset: ResolvedPlugin
    #: Searched name → ``float``, ``int`` or ``categorical``: how Optuna suggests it.
    kinds: Mapping[str, str]
    #: Hash of the cell configuration and the space: a study serves one search only.
    identity: str

    @property
    def names(self) -> list[str]:
        return [search.name for search in self.config.space]

    def describe(self) -> str:
        """``focal+any_class on negdigits · smallcnn (seed 0)``."""
        config = self.config
        seeds = ", ".join(str(seed) for seed in config.seeds)
        return (
            f"{config.loss.display_name} on {config.dataset.display_name} · "
            f"{config.backbone.display_name} ({'seeds' if len(config.seeds) > 1 else 'seed'} "
            f"{seeds})"
        )


def plan_tuning(spec: BenchmarkSpec, plugins: Plugins) -> TuneProblem:
    """Check the spec's ``tune`` block against the plugins: the tuned cell expands, every
    searched option exists, and every bound or choice is a value its factory accepts."""
    from mlcbench.grid import expand, stable_hash

    if spec.tune is None:
        raise SpecError(
            f"{spec.source}: no 'tune:' block; add one with the search space, e.g. "
            "tune: {space: {any_class.weight: {low: 0.05, high: 2.0, log: true}}}"
        )
    config = spec.tune
    trial_spec = dataclasses.replace(
        spec,
        datasets=(config.dataset,),
        backbones=(config.backbone,),
        losses=(config.loss,),
        seeds=config.seeds,
        reference=(),
        tune=None,
        train=one_device(spec.train),
    )
    cells = expand(trial_spec, plugins)
    resolved_parts = dict(cells[0].config["loss"]["parts"])
    try:
        kinds = {s.name: _search_kind(s, resolved_parts, plugins) for s in config.space}
    except SpecError as error:
        raise SpecError(f"{spec.source}: {error}") from None
    cell = {k: v for k, v in cells[0].config.items() if k not in ("seed", "versions")}
    space = [
        {"name": s.name, "low": s.low, "high": s.high, "log": s.log, "choices": list(s.choices)}
        for s in config.space
    ]
    identity = stable_hash({"cell": cell, "seeds": list(config.seeds), "space": space})
    return TuneProblem(trial_spec, config, cells[0].dataset, kinds, identity)


def one_device(train: TrainConfig) -> TrainConfig:
    """A trial trains in this process on one device, where the optimiser's pruning reports
    arrive; the spec's devices and strategy are for ``mlcbench run``. Runtime keys only, so
    the trial's cells keep their ids."""
    devices = train.devices
    first: int | str | list[int] = [devices[0]] if isinstance(devices, (list, tuple)) else 1
    return dataclasses.replace(train, devices=first, strategy="auto", num_nodes=1)


def _search_kind(
    search: SearchRange, resolved_parts: Mapping[str, Mapping[str, Any]], plugins: Plugins
) -> str:
    """How Optuna suggests ``search``, once each bound or choice has passed the checks of the
    loss factory (types from its signature, ranges from the factory itself)."""
    from mlcbench.options import coerce, option_parameters, unknown_key_error

    if search.part is None:  # class_balance: checked with the spec
        return "categorical" if search.choices else "float"
    entry = plugins.losses.get(search.part)
    parameters = {p.name: p for p in option_parameters(entry.factory)}
    if search.option in parameters:
        annotation = parameters[search.option].annotation
    elif any(p.kind is p.VAR_KEYWORD for p in inspect.signature(entry.factory).parameters.values()):
        annotation = Any
    else:
        raise unknown_key_error(search.option, list(parameters), search.where, "option")
    values = (
        [(f"choices[{i}]", choice) for i, choice in enumerate(search.choices)]
        if search.choices
        else [("low", search.low), ("high", search.high)]
    )
    for label, value in values:
        where = f"{search.where}.{label}"
        options = {**resolved_parts[search.part], search.option: coerce(value, annotation, where)}
        try:
            entry.factory(**options)
        except (SpecError, ValueError) as error:
            raise SpecError(f"{where}: {error}") from None
    if search.choices:
        return "categorical"
    return "int" if annotation is int else "float"


def suggest(trial: optuna.Trial, problem: TuneProblem) -> dict[str, Any]:
    """The trial's value of every searched option, drawn by the study's sampler."""
    values: dict[str, Any] = {}
    for search in problem.config.space:
        kind, name = problem.kinds[search.name], search.name
        if kind == "categorical":
            values[name] = trial.suggest_categorical(name, list(search.choices))
            continue
        assert search.low is not None and search.high is not None  # a range has both
        if kind == "int":
            values[name] = trial.suggest_int(
                name, int(search.low), int(search.high), log=search.log
            )
        else:
            values[name] = trial.suggest_float(
                name, float(search.low), float(search.high), log=search.log
            )
    return values


def loss_with(loss: LossSpec, space: Sequence[SearchRange], values: Mapping[str, Any]) -> LossSpec:
    """``loss`` with the searched options set to ``values`` (by searched name)."""
    from mlcbench.tune_spec import CLASS_BALANCE

    parts = tuple(
        dataclasses.replace(
            part,
            options={
                **part.options,
                **{s.option: values[s.name] for s in space if s.part == part.name},
            },
        )
        for part in loss.parts
    )
    class_balance = values.get(CLASS_BALANCE, loss.class_balance)
    return dataclasses.replace(loss, parts=parts, class_balance=class_balance)


# ---------------------------------------------------------------------------- the study


@dataclass
class TuneSummary:
    """What a study holds after this run, for the closing lines."""

    out_dir: Path
    problem: TuneProblem
    rows: list[TrialRow] = field(default_factory=list)
    #: Trials this run trained (finished or not).
    trained: int = 0
    interrupted_earlier: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def best(self) -> TrialRow | None:
        return best_row(self.rows)

    def closing_lines(self) -> list[str]:
        counts = state_counts(self.rows)
        finished = counts["complete"] + counts["pruned"]
        lines = [
            f"{finished} finished trials ({counts['complete']} complete, {counts['pruned']} "
            f"pruned), {counts['failed']} failed; {self.trained} trained in this run.",
        ]
        best = self.best
        if best is None:
            lines.append("No trial has completed yet, so there are no best values.")
        else:
            lines += [
                f"Best: trial {best.number}, val mAP {best.value:.4f}: "
                + ", ".join(f"{n}={format_value(v)}" for n, v in best.params.items()),
                best_loss_yaml(self.problem, best).rstrip(),
            ]
        written = ", ".join(f"{REPORT_STEM}.{suffix}" for suffix in ("md", "csv", "svg"))
        lines.append(
            f"Wrote {self.out_dir}/{written}"
            + (f", {BEST_FILE}" if best else "")
            + f"; study in {self.out_dir / STUDY_FILE}."
        )
        lines.append(f"Total wall time: {duration(self.seconds)}")
        return lines


def tune(
    spec: BenchmarkSpec,
    plugins: Plugins,
    *,
    out_dir: Path,
    trials: int,
    progress: bool = True,
    echo: Echo = print,
) -> TuneSummary:
    """Run the spec's study until it holds ``trials`` finished (complete or pruned) trials,
    reporting after each trial; a study already that far only gets its report rewritten."""
    from mlcbench.cell_lock import cell_lock

    started = time.perf_counter()
    optuna = import_optuna()
    problem = plan_tuning(spec, plugins)
    summary = TuneSummary(out_dir, problem)
    out_dir.mkdir(parents=True, exist_ok=True)
    with cell_lock(out_dir / LOCK_FILE) as held:
        if not held:
            raise MlcbenchError(
                f"{out_dir}: another 'mlcbench tune' is running on this folder; wait for it "
                "or pass another --out"
            )
        study = open_study(optuna, out_dir, spec.name, problem)
        summary.interrupted_earlier = fail_interrupted_trials(optuna, study)
        for number in summary.interrupted_earlier:
            echo(f"trial {number}: interrupted in an earlier run; marked failed")
        done = count_finished(optuna, study)
        echo(
            f"Tuning {problem.describe()}: {done} of {trials} trials finished in "
            f"{out_dir / STUDY_FILE}"
        )
        dataset = None
        failures_in_a_row = 0
        while done < trials:
            if dataset is None:
                import mlcbench.training  # noqa: F401  (torch and Lightning: not in a trial's time)
                from mlcbench.runner import prepare_dataset

                # Built once; its label files are copied into every trial's folder.
                dataset = prepare_dataset(problem.dataset, out_dir)
            row = run_trial(optuna, study, problem, dataset, plugins, out_dir, progress)
            summary.trained += 1
            summary.rows = trial_rows(study)
            write_report(out_dir, problem, summary.rows)
            done = count_finished(optuna, study)
            echo(progress_line(row, done, trials, summary.best))
            failures_in_a_row = failures_in_a_row + 1 if row.state == "failed" else 0
            if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                raise MlcbenchError(
                    f"{failures_in_a_row} trials in a row failed (last: trial {row.number}: "
                    f"{row.failure}); see {trial_folder(out_dir, row.number)}/failure.json"
                )
        summary.rows = trial_rows(study)
        write_report(out_dir, problem, summary.rows)
    summary.seconds = time.perf_counter() - started
    return summary


def open_study(optuna: Any, out_dir: Path, name: str, problem: TuneProblem) -> optuna.Study:
    """The study in ``out_dir/study.db``, created on first use; one that searched something
    else (another space, cell or training) is refused rather than mixed with this one."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{(out_dir / STUDY_FILE).resolve()}")
    # One study per folder: another's trial numbers would land in the same trials/<n>/.
    others = [other for other in optuna.get_all_study_names(storage) if other != name]
    if others:
        raise MlcbenchError(
            f"{out_dir / STUDY_FILE}: holds study {others[0]!r}, not {name!r}; pass another --out"
        )
    pruner = problem.config.pruner
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        load_if_exists=True,
        pruner=optuna.pruners.NopPruner()
        if pruner is None
        else optuna.pruners.MedianPruner(
            n_startup_trials=pruner.startup_trials, n_warmup_steps=pruner.warmup_epochs
        ),
    )
    recorded = study.user_attrs.get(SEARCH_ATTRIBUTE)
    if recorded is None:
        study.set_user_attr(SEARCH_ATTRIBUTE, problem.identity)
    elif recorded != problem.identity:
        raise MlcbenchError(
            f"{out_dir / STUDY_FILE}: holds study {name!r} of a different search (its tune "
            "block, cell or training settings changed); pass another --out, or delete the "
            "folder to start over"
        )
    return study


def fail_interrupted_trials(optuna: Any, study: optuna.Study) -> list[int]:
    """Mark failed the trials an earlier, killed run left RUNNING (this process holds the
    study's lock, so no other is training them); they never count as finished."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in running:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return [trial.number for trial in running]


def count_finished(optuna: Any, study: optuna.Study) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def trial_sampler(optuna: Any, config: TuneConfig, number: int) -> Any:
    """A TPE sampler seeded from ``sampler_seed`` and the trial number: a resumed study
    never redraws the values of its first trials, and the same history gives the same draw."""
    digest = hashlib.sha256(f"{config.sampler_seed}:{number}".encode()).hexdigest()
    return optuna.samplers.TPESampler(
        seed=int(digest[:8], 16), n_startup_trials=config.sampler_startup_trials
    )


def trial_folder(out_dir: Path, number: int) -> Path:
    return out_dir / TRIALS_DIR / str(number)


def run_trial(
    optuna: Any,
    study: optuna.Study,
    problem: TuneProblem,
    dataset: MultiLabelDataset,
    plugins: Plugins,
    out_dir: Path,
    progress: bool,
) -> TrialRow:
    """Ask the study for a trial, train it, tell the study how it ended."""
    from mlcbench.files import write_json
    from mlcbench.isolation import describe_error

    study.sampler = trial_sampler(optuna, problem.config, len(study.get_trials(deepcopy=False)))
    trial = study.ask()
    values = suggest(trial, problem)
    folder = trial_folder(out_dir, trial.number)
    # A folder left by a deleted study must not be resumed from as if it were this trial's.
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(out_dir / "labels", folder / "labels")
    started = time.perf_counter()
    state, value, failure = optuna.trial.TrialState.COMPLETE, None, ""
    try:
        value = train_trial(trial, values, problem, dataset, plugins, folder, progress)
    except optuna.TrialPruned:
        state = optuna.trial.TrialState.PRUNED
    except (KeyboardInterrupt, SystemExit):
        # Lightning turns Ctrl-C into SystemExit; the trial is failed, the study kept.
        _finish(study, trial, optuna.trial.TrialState.FAIL, None, "interrupted", started)
        raise KeyboardInterrupt from None
    except (SpecError, PluginError) as error:  # the user's to fix: every trial would fail
        _finish(study, trial, optuna.trial.TrialState.FAIL, None, describe_error(error), started)
        raise
    except Exception as error:
        state, failure = optuna.trial.TrialState.FAIL, describe_error(error)
        write_json(
            folder / "failure.json",
            {"trial": trial.number, "reason": failure, "traceback": traceback.format_exc()},
        )
    _finish(study, trial, state, value, failure, started)
    return row_of(study.get_trials(deepcopy=False)[trial.number])


def _finish(
    study: optuna.Study,
    trial: optuna.Trial,
    state: Any,
    value: float | None,
    failure: str,
    started: float,
) -> None:
    trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
    if failure:
        trial.set_user_attr("failure", failure)
    study.tell(trial, value, state=state)


def train_trial(
    trial: optuna.Trial,
    values: Mapping[str, Any],
    problem: TuneProblem,
    dataset: MultiLabelDataset,
    plugins: Plugins,
    folder: Path,
    progress: bool,
) -> float:
    """Train the trial's cells (one per tune seed) in ``folder``; return the mean of their
    best val mAPs. Raises ``optuna.TrialPruned`` when the pruner stops the trial."""
    from mlcbench.grid import expand
    from mlcbench.results import CellPaths
    from mlcbench.runner import run_cell

    loss = loss_with(problem.config.loss, problem.config.space, values)
    spec = dataclasses.replace(problem.spec, losses=(loss,))
    cells = expand(spec, plugins)
    trial.set_user_attr("cells", [cell.id for cell in cells])
    best_maps = []
    for index, cell in enumerate(cells):
        paths = CellPaths(folder, cell.id)
        # Seeds train one after another: seed k's epochs are steps k·epochs + epoch.
        callback = pruning_callback(trial, first_step=index * spec.train.epochs)
        try:
            metrics = run_cell(
                cell, dataset, spec, plugins, paths, progress=progress, callbacks=[callback]
            )
        finally:
            # Scores, metrics and logs stay; a checkpoint per trial would fill the disk.
            shutil.rmtree(paths.root / "checkpoints", ignore_errors=True)
        best_maps.append(float(metrics["training"]["best_val_map"]))
    trial.set_user_attr("best_val_maps", best_maps)
    objective = statistics.fmean(best_maps)
    if not math.isfinite(objective):
        raise MlcbenchError(f"no finite validation mAP (per seed: {best_maps})")
    return objective


def pruning_callback(trial: Any, *, first_step: int = 0) -> Any:
    """A Lightning callback that reports the val mAP of each validation epoch to ``trial``
    (at step ``first_step + epoch``) and raises ``optuna.TrialPruned`` when the trial's
    pruner says stop. (Optuna's own callback lives in a package of its own.)"""
    import optuna
    import pytorch_lightning as pl

    class ReportValidationMap(pl.Callback):
        # on_validation_end, not on_validation_epoch_end: callbacks' epoch-end hooks run
        # before the module's, where the epoch's mAP is logged.
        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            report_epoch(trial, trainer, first_step)

        def on_exception(
            self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
        ) -> None:
            # Pruning stops the fit from inside validation: close the progress bars there, or
            # they linger above the next trial's line.
            bar = trainer.progress_bar_callback
            if bar is not None and isinstance(exception, optuna.TrialPruned):
                bar.on_validation_end(trainer, pl_module)
                bar.on_train_end(trainer, pl_module)

    return ReportValidationMap()


def report_epoch(trial: Any, trainer: Any, first_step: int) -> None:
    """Report the epoch's val mAP (``training.MONITOR``) to the trial; prune if told to."""
    import optuna

    from mlcbench.training import MONITOR

    value = trainer.callback_metrics.get(MONITOR)
    if trainer.sanity_checking or value is None:
        return
    epoch = int(trainer.current_epoch)
    trial.report(float(value), first_step + epoch)
    if trial.should_prune():
        raise optuna.TrialPruned(
            f"val mAP {float(value):.4f} after epoch {epoch + 1} is below the median of "
            "earlier trials"
        )
