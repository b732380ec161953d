"""The report of a tuning study: ``tune.md`` (every trial, the best in bold, a pasteable loss
block), ``tune.csv`` with exact values, ``tune.svg`` (val mAP per trial with the running best)
and ``best.yaml``; and the one-line progress of each trial."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from mlcbench.tuning import TuneProblem

REPORT_STEM = "tune"
BEST_FILE = "best.yaml"
#: Digits of the values in the pasteable loss block (tune.csv keeps them exact).
SIGNIFICANT_DIGITS = 4
STUDY_FILE = "study.db"
TRIALS_DIR = "trials"
STATE_NAMES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}


@dataclass(frozen=True)
class TrialRow:
    """One trial as the report shows it."""

    number: int
    #: ``complete``, ``pruned``, ``failed`` or ``running``.
    state: str
    params: Mapping[str, Any]
    #: The objective (mean best val mAP) of a complete trial.
    value: float | None
    #: The last val mAP reported: where a pruned trial stood when it stopped.
    last_value: float | None
    #: Validation epochs run, over all the trial's seeds.
    epochs: int
    seconds: float | None
    failure: str = ""


def row_of(trial: optuna.trial.FrozenTrial) -> TrialRow:
    steps = trial.intermediate_values
    state = STATE_NAMES.get(trial.state.name, trial.state.name.lower())
    seconds = trial.user_attrs.get("seconds")
    if seconds is None and trial.duration is not None:
        seconds = trial.duration.total_seconds()
    failure = trial.user_attrs.get("failure", "interrupted" if state == "failed" else "")
    return TrialRow(
        number=trial.number,
        state=state,
        params=dict(trial.params),
        value=trial.value if state == "complete" else None,
        last_value=steps[max(steps)] if steps else None,
        epochs=len(steps),
        seconds=seconds,
        failure=failure,
    )


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    return [row_of(trial) for trial in study.get_trials(deepcopy=False)]


def state_counts(rows: Sequence[TrialRow]) -> dict[str, int]:
    """Trials per state (``complete``, ``pruned``, ``failed``, ``running``)."""
    return {state: sum(row.state == state for row in rows) for state in STATE_NAMES.values()}


def best_row(rows: Sequence[TrialRow]) -> TrialRow | None:
    """The complete trial with the highest objective (the earliest of a tie)."""
    complete = [row for row in rows if row.value is not None]
    return max(complete, key=lambda row: (row.value, -row.number)) if complete else None


def format_value(value: Any) -> str:
    """A searched value for people: 4 significant digits; ``off`` for class balancing off."""
    if value is None:
        return "off"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{SIGNIFICANT_DIGITS}g}"
    return str(value)


def progress_line(row: TrialRow, done: int, trials: int, best: TrialRow | None) -> str:
    values = ", ".join(f"{name}={format_value(v)}" for name, v in row.params.items())
    seconds = f" in {row.seconds:.1f} s" if row.seconds is not None else ""
    if row.state == "complete":
        outcome = f"val mAP {row.value:.4f}{seconds}"
    elif row.state == "pruned":
        last = f" (val mAP {row.last_value:.4f})" if row.last_value is not None else ""
        outcome = f"pruned after {plural(row.epochs, 'epoch')}{last}{seconds}"
    else:
        outcome = f"FAILED: {row.failure}"
    best_text = f" (best: trial {best.number}, {best.value:.4f})" if best is not None else ""
    return f"[{done}/{trials}] trial {row.number}: {values} → {outcome}{best_text}"


def tuned_loss_entry(problem: TuneProblem, params: Mapping[str, Any]) -> dict[str, Any]:
    """The tuned loss as a spec entry with the given values, rounded for pasting."""
    rounded = {
        name: float(format_value(v)) if isinstance(v, float) else v for name, v in params.items()
    }
    from mlcbench.tuning import loss_with

    loss = loss_with(problem.config.loss, problem.config.space, rounded)
    entry: dict[str, Any] = {"name": loss.name}
    for part in loss.parts:
        if part.options:
            entry[part.name] = dict(part.options)
    entry["class_balance"] = False if loss.class_balance is None else loss.class_balance
    entry["label"] = f"{problem.config.loss.display_name} (tuned)"
    return entry


def best_loss_yaml(problem: TuneProblem, best: TrialRow) -> str:
    import yaml

    entry = tuned_loss_entry(problem, best.params)
    return yaml.safe_dump(
        {"losses": [entry]}, sort_keys=False, default_flow_style=None, allow_unicode=True
    )


def write_report(out_dir: Path, problem: TuneProblem, rows: Sequence[TrialRow]) -> None:
    """``tune.md``, ``tune.csv``, ``tune.svg`` and (once a trial completed) ``best.yaml``,
    each written whole or not at all."""
    from mlcbench.files import atomic_write_text
    from mlcbench.plot import trials_svg

    best = best_row(rows)
    atomic_write_text(out_dir / f"{REPORT_STEM}.md", report_markdown(problem, rows, best))
    atomic_write_text(out_dir / f"{REPORT_STEM}.csv", report_csv(problem.names, rows))
    points = [
        (row.number, value, row.state == "pruned")
        for row in rows
        if (value := row.value if row.state == "complete" else row.last_value) is not None
        and row.state in ("complete", "pruned")
    ]
    svg = trials_svg(f"{problem.spec.name}: val mAP per trial", points, "val mAP")
    atomic_write_text(out_dir / f"{REPORT_STEM}.svg", svg)
    if best is not None:
        header = f"# Best of {problem.describe()}: trial {best.number}, val mAP {best.value:.4f}\n"
        atomic_write_text(out_dir / BEST_FILE, header + best_loss_yaml(problem, best))


def report_markdown(problem: TuneProblem, rows: Sequence[TrialRow], best: TrialRow | None) -> str:
    from tabulate import tabulate

    config = problem.config
    headers = ["Trial", "State", *problem.names, "Val mAP", "Epochs", "Time (s)"]
    body = []
    for row in rows:
        if row.value is not None:
            objective = f"{row.value:.4f}"
        elif row.last_value is not None:
            objective = f"({row.last_value:.4f})"
        else:
            objective = ""
        cells = [
            str(row.number),
            row.state + (f": {row.failure}" if row.failure else ""),
            *(
                format_value(row.params[name]) if name in row.params else ""
                for name in problem.names
            ),
            objective,
            str(row.epochs),
            f"{row.seconds:.1f}" if row.seconds is not None else "",
        ]
        if row is best:
            cells = [f"**{cell}**" if cell else cell for cell in cells]
        body.append(cells)
    align = ("right", "left", *("right" for _ in problem.names), "right", "right", "right")
    table = tabulate(
        body, headers=headers, tablefmt="github", disable_numparse=True, colalign=align
    )
    counts = state_counts(rows)
    if config.pruner is None:
        pruning = "no pruning"
    else:
        warmup = config.pruner.warmup_epochs
        pruning = (
            "median pruning on val mAP per epoch (once "
            f"{plural(config.pruner.startup_trials, 'trial')} completed"
            + (f"; never in a trial's first {plural(warmup, 'epoch')})" if warmup else ")")
        )
    lines = [
        f"# Tuning {problem.spec.name}: {config.loss.display_name}",
        "",
        f"{problem.describe()}. Objective: the best validation mAP of each trial's training "
        f"(the mean over its seeds), maximised by Optuna's TPE sampler (seed "
        f"{config.sampler_seed}, {config.sampler_startup_trials} random trials first) with "
        f"{pruning}. The test split is never used. Study `{problem.spec.name}` in "
        f"`{STUDY_FILE}`; each trial's cells, scores and logs in `{TRIALS_DIR}/<trial>/`.",
        "",
        f"{counts['complete'] + counts['pruned']} finished trials ({counts['complete']} "
        f"complete, {counts['pruned']} pruned), {counts['failed']} failed. **Bold**: the best "
        "trial. In parentheses: a pruned trial's last val mAP.",
        "",
        table,
        "",
        f"![Val mAP per trial]({REPORT_STEM}.svg)",
        "",
        "## Best values",
        "",
    ]
    if best is None:
        lines.append("No trial has completed yet.")
    else:
        lines += [
            f"Trial {best.number}, val mAP {best.value:.4f}. To use them, paste into a spec "
            f"(values rounded to {SIGNIFICANT_DIGITS} significant digits; `{REPORT_STEM}.csv` "
            "has them exact):",
            "",
            "```yaml",
            best_loss_yaml(problem, best).rstrip(),
            "```",
        ]
    return "\n".join(lines) + "\n"


def report_csv(names: Sequence[str], rows: Sequence[TrialRow]) -> str:
    """One line per trial, values exact: ``off`` for a switched-off option, empty for none."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["trial", "state", *names, "val_map", "last_val_map", "epochs", "seconds", "failure"]
    )
    for row in rows:
        params = [
            ""
            if name not in row.params
            else "off"
            if row.params[name] is None
            else row.params[name]
            for name in names
        ]
        writer.writerow(
            [
                row.number,
                row.state,
                *params,
                "" if row.value is None else row.value,
                "" if row.last_value is None else row.last_value,
                row.epochs,
                "" if row.seconds is None else row.seconds,
                row.failure,
            ]
        )
    return buffer.getvalue()


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
