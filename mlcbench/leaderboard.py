"""Markdown leaderboards (and a CSV of every number in them) from results on disk.

Everything here is read from ``metrics.json`` and the dataset manifests, so a leaderboard can
be rebuilt without retraining and the same results always give the same bytes. Outside
submissions (``mlcbench submit``) are rows like the cells', named in a Submission column and
ranked with them; they never enter the gains table.
"""

from __future__ import annotations

import datetime
import io
import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from mlcbench.bootstrap import GAIN_METRICS, Gain, Pair, paired_gains
from mlcbench.errors import MlcbenchError, SpecError
from mlcbench.files import SAFE_NAME, atomic_write_text, remove_stale_temporaries
from mlcbench.plot import forest_svg, gains_rows
from mlcbench.scores import read_table
from mlcbench.submission import SUBMISSIONS

SPLIT = "test"
RUN_DIR = "_run_dir"
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Column:
    title: str
    metric: str
    #: Threshold policy per table: the val-tuned table reads F2 from F2-tuned thresholds.
    tuned_policy: str
    higher_is_better: bool = True


COLUMNS = (
    Column("F1", "macro_f1", "val_tuned_f1"),
    Column("F2", "macro_f2", "val_tuned_f2"),
    Column("mAP", "map", "val_tuned_f1"),
    Column("F1-neg", "f1_neg", "val_tuned_f1"),
    Column("Neg. false alarms", "neg_false_alarm_rate", "val_tuned_f1", higher_is_better=False),
)
#: Where a dataset defines class weights (Sewer-ML), its own F2: after the F2 column.
CIW_F2 = Column("CIW-F2", "ciw_f2", "val_tuned_f2")
TABLES = (
    ("Threshold 0.5", "threshold_0.5", "every class fires at probability ≥ 0.5"),
    (
        "Val-tuned thresholds",
        "tuned",
        "per-class thresholds chosen on the val split to maximise that class's F1 "
        "(F2 for the F2 column), then applied unchanged to test",
    ),
)


def collect_reference(run_dirs: Iterable[Path]) -> list[dict[str, Any]]:
    """Published numbers the runs' specs declared (``reference.json``), without repeats."""
    rows: list[dict[str, Any]] = []
    for run_dir in run_dirs:
        path = run_dir / "reference.json"
        if path.is_file():
            for row in json.loads(path.read_text(encoding="utf-8")):
                if row not in rows:
                    rows.append(row)
    return rows


def collect(run_dirs: Iterable[Path]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """All cell metrics and dataset manifests under the given run directories."""
    cells: dict[str, dict[str, Any]] = {}
    manifests: dict[str, dict[str, Any]] = {}
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise MlcbenchError(f"{run_dir}: no such results directory")
        for path in sorted(run_dir.glob("cells/*/metrics.json")):
            metrics = _read_json(path)
            metrics[RUN_DIR] = run_dir  # where its score files are; never written out
            cells.setdefault(metrics["cell_id"], metrics)
        for path in sorted(run_dir.glob("labels/*/manifest.json")):
            manifests.setdefault(path.parent.name, _read_json(path))
    ordered = sorted(cells.values(), key=lambda m: (m["cell"]["dataset"], m["cell"]["dataset_key"]))
    return ordered, manifests


#: What a submission's ``metrics.json`` says about it that the leaderboard shows.
SUBMISSION_FIELDS = {"name", "seed", "dataset", "dataset_key", "backbone", "loss"}


def collect_submissions(run_dirs: Iterable[Path]) -> list[dict[str, Any]]:
    """The metrics of every outside submission under the given run directories, by name and
    seed (a name and seed in two directories counts once, from the first)."""
    found: dict[tuple[str, str, int], dict[str, Any]] = {}
    for run_dir in run_dirs:
        for path in sorted(run_dir.glob(f"{SUBMISSIONS}/*/*/metrics.json")):
            metrics = _read_json(path, fix="submit it again with --force")
            record = metrics.get("submission")
            if not (isinstance(record, dict) and record.keys() >= SUBMISSION_FIELDS):
                raise MlcbenchError(f"{path}: not a submission; submit it again with --force")
            found.setdefault((record["dataset_key"], record["name"], record["seed"]), metrics)
    return [found[key] for key in sorted(found)]


def _read_json(path: Path, fix: str = "re-run its cell") -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise MlcbenchError(f"{path}: unreadable results file ({error}); {fix}") from None
    if not isinstance(value, dict):
        raise MlcbenchError(f"{path}: not a results object; {fix}")
    return value


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


def _format(mean: float, std: float | None) -> str:
    text = f"{100 * mean:.2f}"
    return f"{text} ± {100 * std:.2f}" if std is not None else text


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def render(
    name: str,
    cells: list[dict[str, Any]],
    manifests: dict[str, dict[str, Any]],
    reference: Sequence[dict[str, Any]] = (),
    submissions: Sequence[dict[str, Any]] = (),
) -> tuple[str, str, str | None]:
    """The markdown leaderboard, the CSV of every number in it, and the gains plot (SVG)."""
    out = io.StringIO()
    csv_rows: list[list[Any]] = []
    plot_rows: list[tuple[str, float, float, float, bool]] = []
    out.write(f"# Leaderboard: {_escape(name)}\n\n")
    out.write(
        "Mean ± standard deviation over seeds, in percent, on the test split. "
        "F1 and F2 are macro averages over classes with a positive; F1-neg is the F1 of the "
        "image-level decision 'no class fires'; Neg. false alarms is the share of negative "
        "images on which any class fires (lower is better). Best value per column in bold.\n"
    )
    by_dataset, submitted = _by_dataset(cells, submissions)
    for (dataset, key), dataset_cells in by_dataset.items():
        dataset_submissions = submitted.get((dataset, key), [])
        out.write(f"\n## {_escape(dataset)}\n\n")
        out.write(_dataset_summary(manifests.get(key)))
        columns = columns_for([*dataset_cells, *dataset_submissions])
        for title, policy, explanation in TABLES:
            out.write(f"\n### {title}\n\nThresholds: {explanation}.\n\n")
            rows = _rows(dataset_cells, dataset_submissions, policy, columns)
            out.write(_table(rows, columns) + "\n")
            published = [r for r in reference if r["dataset"] == dataset]
            if policy == "threshold_0.5" and published:
                out.write(_reference_table(published))
            for (backbone, loss, submission), (seeds, values) in rows.items():
                for column, (mean, std) in zip(columns, values, strict=True):
                    csv_rows.append(
                        [
                            dataset,
                            key,
                            backbone,
                            loss,
                            policy,
                            column.metric,
                            mean,
                            std,
                            seeds,
                            None,
                            None,
                            None,
                            submission,
                        ]
                    )
        gains = _gains(dataset_cells)
        if gains:
            out.write(_gains_table(gains))
            plot_rows += gains_rows(dataset, gains)
            for (backbone, baseline, treated, seeds), by_metric in gains.items():
                for metric, gain in by_metric.items():
                    csv_rows.append(
                        [
                            dataset,
                            key,
                            backbone,
                            treated,
                            f"gain over {baseline}",
                            metric,
                            gain.delta,
                            None,
                            seeds,
                            gain.low,
                            gain.high,
                            gain.p_value,
                            "",
                        ]
                    )
        if dataset_cells:
            out.write(_provenance(dataset_cells))
        if dataset_submissions:
            out.write(_submissions_note(dataset_submissions))
    plot = None
    if plot_rows:
        plot = forest_svg(f"{name}: gains of the auxiliary term", plot_rows)
        out.write(f"\n## Gains at a glance\n\n![Gains with 95% intervals]({name}_gains.svg)\n")
    return out.getvalue(), _csv(csv_rows), plot


DatasetKey = tuple[str, str]


def _by_dataset(
    cells: list[dict[str, Any]], submissions: Sequence[dict[str, Any]]
) -> tuple[dict[DatasetKey, list[dict[str, Any]]], dict[DatasetKey, list[dict[str, Any]]]]:
    """Cells and submissions per (dataset name, dataset key). A submission joins the cells of
    its dataset key; a dataset with submissions only comes after those with cells."""
    by_dataset: dict[DatasetKey, list[dict[str, Any]]] = defaultdict(list)
    for metrics in cells:
        by_dataset[(metrics["cell"]["dataset"], metrics["cell"]["dataset_key"])].append(metrics)
    name_of = {key: dataset for dataset, key in reversed(list(by_dataset))}
    submitted: dict[DatasetKey, list[dict[str, Any]]] = defaultdict(list)
    for metrics in submissions:
        record = metrics["submission"]
        key = record["dataset_key"]
        submitted[(name_of.get(key, record["dataset"]), key)].append(metrics)
    for group in sorted(submitted):
        by_dataset.setdefault(group, [])
    return dict(by_dataset), dict(submitted)


GainKey = tuple[str, str, str, int]


def _gains(cells: list[dict[str, Any]]) -> dict[GainKey, dict[str, Gain]]:
    """Every loss X that also ran as X+aux on the same backbone and seeds: the bootstrap
    gains of X+aux over X on the test images."""
    by_setting: dict[tuple[str, int, str], dict[str, Any]] = {}
    for metrics in cells:
        loss = metrics["config"].get("loss")
        if loss is None:
            continue
        identity = json.dumps([loss["parts"], loss.get("class_balance")], sort_keys=True)
        by_setting[(metrics["cell"]["backbone"], metrics["cell"]["seed"], identity)] = metrics
    matched: dict[tuple[str, str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(
        list
    )
    for (backbone, seed, _), treated in by_setting.items():
        loss = treated["config"]["loss"]
        if len(loss["parts"]) < 2:
            continue
        base_identity = json.dumps([loss["parts"][:1], loss.get("class_balance")], sort_keys=True)
        baseline = by_setting.get((backbone, seed, base_identity))
        if baseline is not None:
            names = (backbone, baseline["cell"]["loss"], treated["cell"]["loss"])
            matched[names].append((baseline, treated))
    gains = {}
    for (backbone, baseline_name, treated_name), runs in sorted(matched.items()):
        labels = _test_labels(runs[0][0])
        pairs = [Pair(_test_scores(a), _test_scores(b)) for a, b in runs]
        gains[(backbone, baseline_name, treated_name, len(runs))] = paired_gains(
            pairs, labels, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED
        )
    return gains


def _test_scores(metrics: dict[str, Any]) -> Any:
    return read_table(metrics[RUN_DIR] / "cells" / metrics["cell_id"] / f"scores_{SPLIT}.csv")[2]


def _test_labels(metrics: dict[str, Any]) -> Any:
    run_dir, key = metrics[RUN_DIR], metrics["cell"]["dataset_key"]
    return read_table(run_dir / "labels" / key / f"{SPLIT}.csv")[2]


def _gains_table(gains: dict[GainKey, dict[str, Gain]]) -> str:
    rows = []
    for (backbone, baseline, treated, seeds), by_metric in gains.items():
        cells = []
        for metric in GAIN_METRICS:
            gain = by_metric[metric]
            marker = " ✱" if gain.significant else ""
            p_text = "p<0.001" if gain.p_value < 0.001 else f"p={gain.p_value:.3f}"
            cells.append(
                f"{100 * gain.delta:+.2f} [{100 * gain.low:+.2f}, {100 * gain.high:+.2f}] "
                f"{p_text}{marker}"
            )
        rows.append([_escape(backbone), _escape(baseline), _escape(treated), *cells, seeds])
    headers = ["Backbone", "Baseline", "With", "ΔF1", "ΔF2", "ΔmAP", "ΔF1-neg", "Seeds"]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    return (
        "\n### Gains of the auxiliary term\n\n"
        f"Difference (percentage points, test split, threshold 0.5), mean over seeds, with a "
        f"95% paired-bootstrap interval over test images ({BOOTSTRAP_RESAMPLES} resamples, "
        f"seed {BOOTSTRAP_SEED}) and a two-sided p-value; ✱ marks an interval that excludes 0."
        f"\n\n{table}\n"
    )


#: A table row: backbone, loss, and the submission's name ('' for the cells' rows).
RowKey = tuple[str, str, str]
Rows = dict[RowKey, tuple[int, list[tuple[float, float | None]]]]


def columns_for(runs: Sequence[dict[str, Any]]) -> tuple[Column, ...]:
    """The table's columns: CIW-F2 joins where every run of the dataset scored it."""
    if runs and all(run[SPLIT]["threshold_0.5"].get("ciw_f2") is not None for run in runs):
        index = [c.metric for c in COLUMNS].index("macro_f2") + 1
        return (*COLUMNS[:index], CIW_F2, *COLUMNS[index:])
    return COLUMNS


def _rows(
    cells: list[dict[str, Any]],
    submissions: Sequence[dict[str, Any]],
    policy: str,
    columns: Sequence[Column] = COLUMNS,
) -> Rows:
    """One row per backbone × loss of the cells, then one per submission name; each the
    mean and std over its seeds."""
    measured: dict[RowKey, list[dict[str, Any]]] = defaultdict(list)
    for metrics in cells:
        measured[(metrics["cell"]["backbone"], metrics["cell"]["loss"], "")].append(metrics)
    submitted: dict[RowKey, list[dict[str, Any]]] = defaultdict(list)
    for metrics in submissions:
        record = metrics["submission"]
        submitted[(record["backbone"], record["loss"], record["name"])].append(metrics)
    ordered = [*sorted(measured.items()), *sorted(submitted.items(), key=lambda i: i[0][2])]
    rows = {}
    for row_key, runs in ordered:
        values = []
        for column in columns:
            block_name = column.tuned_policy if policy == "tuned" else policy
            values.append(_mean_std([run[SPLIT][block_name][column.metric] for run in runs]))
        rows[row_key] = (len(runs), values)
    return rows


def _reference_table(rows: list[dict[str, Any]]) -> str:
    """Published numbers, labelled as such and never ranked against the measured rows."""
    metrics = [
        ("F1", "macro_f1"),
        ("F2", "macro_f2"),
        ("CIW-F2", "ciw_f2"),
        ("mAP", "map"),
        ("F1-neg", "f1_neg"),
    ]
    shown = [(title, key) for title, key in metrics if any(key in r["metrics"] for r in rows)]
    body = [
        [
            _escape(r["backbone"]),
            _escape(r["loss"]),
            *(f"{r['metrics'][key]:.2f}" if key in r["metrics"] else "—" for _, key in shown),
        ]
        for r in rows
    ]
    table = tabulate(
        body,
        headers=["Backbone", "Loss", *(t for t, _ in shown)],
        tablefmt="github",
        disable_numparse=True,
    )
    sources = sorted(
        {f"{r['source']} ({r['split']} split, threshold {r['threshold']:g})" for r in rows}
    )
    return (
        "\nReference rows — published numbers, not measured here and not ranked: "
        f"{_escape('; '.join(sources))}.\n\n{table}\n"
    )


def _table(rows: Rows, columns: Sequence[Column] = COLUMNS) -> str:
    """The rows with the best mean per column in bold, submissions ranked with the cells; a
    Submission column names the submissions where there are any."""
    best: list[float] = []
    for index, column in enumerate(columns):
        means = [values[index][0] for _, values in rows.values()]
        best.append(max(means) if column.higher_is_better else min(means))
    has_submissions = any(submission for _, _, submission in rows)
    body = []
    for (backbone, loss, submission), (seeds, values) in rows.items():
        cells = []
        for index, (mean, std) in enumerate(values):
            text = _format(mean, std)
            is_best = len(rows) > 1 and round(mean, 6) == round(best[index], 6)
            cells.append(f"**{text}**" if is_best else text)
        names = [_escape(backbone or "—"), _escape(loss or "—")]
        if has_submissions:
            names.append(_escape(submission))
        body.append([*names, *cells, seeds])
    headers = ["Backbone", "Loss", *(["Submission"] if has_submissions else [])]
    headers += [*(c.title for c in columns), "Seeds"]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def _dataset_summary(manifest: dict[str, Any] | None) -> str:
    if manifest is None:
        return "(dataset manifest missing)\n"
    rows, notes = [], []
    for split, facts in manifest["splits"].items():
        images, negatives = facts["images"], facts["negatives"]
        share = f"{100 * negatives / images:.1f}%" if images else "—"
        rows.append(
            [split, images, negatives, share, len(facts["class_counts"]), facts.get("skipped", 0)]
        )
        if facts.get("note"):
            notes.append(f"- {split}: {_escape(facts['note'])}")
    table = tabulate(
        rows,
        headers=["Split", "Images", "Negatives", "Negative share", "Classes", "Skipped unreadable"],
        tablefmt="github",
    )
    return table + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")


def _provenance(cells: list[dict[str, Any]]) -> str:
    """What produced these numbers, read from the cells' own records."""
    versions: dict[str, set[str]] = defaultdict(set)
    hardware: set[str] = set()
    commits: set[str] = set()
    seeds: set[int] = set()
    finished = 0.0
    for metrics in cells:
        for distribution, version in metrics["config"]["versions"].items():
            versions[distribution].add(version)
        training = metrics["training"]
        device = training.get("gpu") or training.get("cpu") or ""
        hardware.add(f"{training['accelerator']} {device} ({training['precision']})".strip())
        recorded = training.get("git_commit")
        commits.add("unrecorded" if recorded is None else recorded or "not a git checkout")
        seeds.add(metrics["cell"]["seed"])
        finished = max(finished, float(training.get("finished_at", 0.0)))
    listing = ", ".join(f"{d} {'/'.join(sorted(v))}" for d, v in sorted(versions.items()))
    date = (
        datetime.datetime.fromtimestamp(finished, datetime.timezone.utc).strftime("%Y-%m-%d")
        if finished
        else "unknown"
    )
    return (
        f"\nProvenance: {_escape(listing)}; project commit {', '.join(sorted(commits))}; "
        f"ran on {_escape(', '.join(sorted(hardware)))}; last cell finished {date} (UTC); "
        f"{len(cells)} cells, {len(seeds)} seeds. Every number comes from the cells' "
        "metrics.json files, which are computed from their score CSVs.\n"
    )


def _submissions_note(submissions: Sequence[dict[str, Any]]) -> str:
    """Who submitted what: each name's description, link, seeds and date."""
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for metrics in submissions:
        by_name[metrics["submission"]["name"]].append(metrics["submission"])
    lines = []
    for name, records in sorted(by_name.items()):
        texts = [r[field] for field in ("description", "url") for r in records if r[field]]
        texts = list(dict.fromkeys(texts))
        last = max(float(r.get("submitted_at", 0.0)) for r in records)
        date = datetime.datetime.fromtimestamp(last, datetime.timezone.utc).strftime("%Y-%m-%d")
        seeds = f"{len(records)} seed{'s' if len(records) > 1 else ''}"
        about = f": {_escape(' — '.join(texts))}" if texts else ""
        lines.append(f"- {_escape(name)} ({seeds}, submitted {date} UTC){about}")
    return (
        "\nSubmissions — models trained elsewhere, added with `mlcbench submit` as val and test "
        "score files that were checked against this dataset's label files and scored by the "
        "same code as the cells, so they are ranked with them:\n\n" + "\n".join(lines) + "\n"
    )


def _csv(rows: list[list[Any]]) -> str:
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "dataset",
            "dataset_key",
            "backbone",
            "loss",
            "policy",
            "metric",
            "mean",
            "std",
            "seeds",
            "ci_low",
            "ci_high",
            "p_value",
            "submission",
        ]
    )
    for row in rows:
        writer.writerow(
            ["" if v is None else (f"{v:.10g}" if isinstance(v, float) else v) for v in row]
        )
    return buffer.getvalue()


def write_leaderboard(name: str, run_dirs: Sequence[Path], out_dir: Path) -> Path:
    """Write ``<out_dir>/<name>.md`` and ``<name>.csv`` from the results under ``run_dirs``."""
    if not SAFE_NAME.match(name):
        raise SpecError(
            f"leaderboard name {name!r} may hold only letters, digits, '_', '.', '-' "
            "(it names a file in the output folder)"
        )
    cells, manifests = collect(run_dirs)
    reference = collect_reference(run_dirs)
    submissions = collect_submissions(run_dirs)
    if not cells and not submissions:
        raise MlcbenchError(
            f"no finished cells under {', '.join(map(str, run_dirs))}; run 'mlcbench run' first"
        )
    markdown, csv_text, plot = render(name, cells, manifests, reference, submissions)
    remove_stale_temporaries(out_dir)
    path = out_dir / f"{name}.md"
    atomic_write_text(path, markdown)
    atomic_write_text(path.with_suffix(".csv"), csv_text)
    if plot is not None:
        atomic_write_text(out_dir / f"{name}_gains.svg", plot)
    write_index(out_dir)
    return path


def write_index(out_dir: Path) -> Path:
    """``README.md`` beside the leaderboards: every benchmark in the folder, its datasets and
    how many backbone × loss rows it ranks (read from each leaderboard's CSV)."""
    import csv

    rows = []
    for table in sorted(out_dir.glob("*.csv")):
        markdown = table.with_suffix(".md")
        if not markdown.is_file():
            continue
        with table.open(encoding="utf-8", newline="") as stream:
            records = [r for r in csv.DictReader(stream) if r["policy"] == "threshold_0.5"]
        datasets = sorted({r["dataset"] for r in records})
        settings = {(r["dataset"], r["backbone"], r["loss"], r.get("submission")) for r in records}
        rows.append(
            [
                f"[{_escape(table.stem)}]({markdown.name})",
                _escape(", ".join(datasets)),
                len(settings),
            ]
        )
    body = tabulate(
        rows,
        headers=["Benchmark", "Datasets", "Ranked rows"],
        tablefmt="github",
        disable_numparse=True,
    )
    path = out_dir / "README.md"
    atomic_write_text(
        path,
        "# Leaderboards\n\nGenerated by mlcbench from results on disk "
        "(`mlcbench leaderboard RUNS_DIR`); each links to its markdown, CSV and gains plot.\n\n"
        f"{body}\n",
    )
    return path
