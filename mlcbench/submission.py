"""``mlcbench submit``: rank a model trained elsewhere from its val and test score files.

A submission is a folder holding ``scores_val.csv`` and ``scores_test.csv`` in the standard
layout (DESIGN §7): ``image_id``, then one probability column per class. Each file must hold
exactly the images of the split's label file in a run's results directory, in the same
order, with the dataset's class columns in the same order; where a JSON sidecar comes with
it, its labels hash must be that of the label file. Nothing is written unless every check
passes. The files are then copied byte for byte to
``RUNS_DIR/submissions/<name>/seed-<seed>/`` and scored under every threshold policy by the
same code as a cell, ``metrics.json`` last, so ``mlcbench leaderboard RUNS_DIR`` ranks the
submission alongside the cells. Several seeds of one model are several submissions under one
name, one ``--seed`` each; the leaderboard averages them as it averages a cell's seeds.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlcbench.errors import SpecError
from mlcbench.files import SAFE_NAME, atomic_write_bytes, remove_stale_temporaries, write_json

SCHEMA_VERSION = 1
#: The folder of a results directory that holds the submissions.
SUBMISSIONS = "submissions"
SPLITS = ("val", "test")
ID_COLUMN = "image_id"

EXAMPLES = """\
examples:
  mlcbench submit preds/ --runs runs/quickstart --name acme-net --backbone ResNet-50 \\
      --loss asl --description "ImageNet-pretrained, 30 epochs" --url https://example.org
  mlcbench submit preds-seed1/ --runs runs/quickstart --name acme-net --seed 1 \\
      --backbone ResNet-50 --loss asl
  mlcbench leaderboard runs/quickstart             the leaderboard now ranks acme-net
"""


@dataclass(frozen=True)
class Submission:
    """What the submitter says about a model trained elsewhere."""

    #: The row's name on the leaderboard; also names its folder, so :data:`SAFE_NAME` only.
    name: str
    #: Free text shown in the Backbone and Loss columns ('' shows as '—').
    backbone: str = ""
    loss: str = ""
    #: Tells several runs of one model apart; the leaderboard averages them.
    seed: int = 0
    description: str = ""
    url: str = ""


@dataclass(frozen=True)
class RunDataset:
    """One dataset of a results directory, as ``mlcbench run`` wrote its labels."""

    key: str
    #: The name its cells show on the leaderboard (the dataset's own name without cells).
    name: str
    folder: Path
    manifest: dict[str, Any]

    def labels(self, split: str) -> Path:
        return self.folder / f"{split}.csv"

    def describe(self) -> str:
        return f"{self.key} ({self.name})"


def submission_dir(runs_dir: Path, name: str, seed: int) -> Path:
    """Where one seed of a submission lives in a results directory."""
    return runs_dir / SUBMISSIONS / name / f"seed-{seed}"


def submit(
    scores_dir: Path,
    runs_dir: Path,
    submission: Submission,
    *,
    dataset: str | None = None,
    force: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Check a submission against a run's label files, copy and score it.

    ``dataset`` picks one of the run's datasets by key or name; without it the only one, or
    the one whose classes (then image ids) the scores match. Returns the submission's folder
    and its metrics. Raises :class:`SpecError` (one line naming the file and the fix) for
    anything wrong, before anything is written.
    """
    submission = _checked(submission)
    score_files = {split: _score_file(scores_dir, split) for split in SPLITS}
    target = choose_dataset(runs_dir, score_files["test"], dataset)
    for split, path in score_files.items():
        check_scores(path, target.labels(split), split)
    folder = submission_dir(runs_dir, submission.name, submission.seed)
    _check_free(folder, submission, force)
    _check_same_model(runs_dir, folder, submission, target)
    return folder, _write(folder, score_files, submission, target)


def _checked(submission: Submission) -> Submission:
    if not SAFE_NAME.match(submission.name):
        raise SpecError(
            f"--name {submission.name!r} may hold only letters, digits, '_', '.', '-' and must "
            "start with a letter or digit (it names the submission's folder)"
        )
    if submission.seed < 0:
        raise SpecError(f"--seed must be 0 or more; got {submission.seed}")
    return Submission(**{k: _one_line(v) for k, v in asdict(submission).items()})


def _one_line(value: Any) -> Any:
    """Free text goes into a markdown table or list: whitespace runs become one space."""
    return " ".join(value.split()) if isinstance(value, str) else value


def _score_file(scores_dir: Path, split: str) -> Path:
    if not scores_dir.is_dir():
        raise SpecError(
            f"{scores_dir}: no such folder; give the folder holding scores_val.csv and "
            "scores_test.csv"
        )
    path = scores_dir / f"scores_{split}.csv"
    if not path.is_file():
        raise SpecError(
            f"{path}: no such file; a submission needs scores_val.csv and scores_test.csv "
            f"({ID_COLUMN}, then one probability column per class)"
        )
    return path


# --------------------------------------------------------------------------------------------
# Which dataset
# --------------------------------------------------------------------------------------------


def run_datasets(runs_dir: Path) -> list[RunDataset]:
    """The datasets whose val and test labels ``mlcbench run`` wrote under ``runs_dir``."""
    from mlcbench.leaderboard import collect

    if not runs_dir.is_dir():
        raise SpecError(
            f"{runs_dir}: no such results directory; --runs takes the folder 'mlcbench run' "
            "wrote (runs/<benchmark> or its --out)"
        )
    cells, manifests = collect([runs_dir])
    cell_names: dict[str, str] = {}
    for metrics in cells:
        cell_names.setdefault(metrics["cell"]["dataset_key"], metrics["cell"]["dataset"])
    datasets = []
    for folder in sorted(path for path in (runs_dir / "labels").glob("*") if path.is_dir()):
        if not all((folder / f"{split}.csv").is_file() for split in SPLITS):
            continue
        manifest = manifests.get(folder.name, {})
        name = cell_names.get(folder.name) or str(manifest.get("dataset", folder.name))
        datasets.append(RunDataset(folder.name, name, folder, manifest))
    if not datasets:
        raise SpecError(
            f"{runs_dir}: no dataset labels (labels/<key>/val.csv and test.csv); submit to the "
            "results directory of an 'mlcbench run' on the dataset the model was trained for"
        )
    return datasets


def choose_dataset(runs_dir: Path, test_scores: Path, wanted: str | None) -> RunDataset:
    """The dataset ``wanted`` names (a key or a name), else the only one, else the one whose
    class names, then image ids, the test scores match."""
    datasets = run_datasets(runs_dir)
    listing = ", ".join(d.describe() for d in datasets)
    if wanted is not None:
        named = [d for d in datasets if wanted in (d.key, d.name, d.manifest.get("dataset"))]
        if not named:
            raise SpecError(f"{runs_dir}: no dataset {wanted!r}; --dataset takes one of {listing}")
        if len(named) > 1:
            keys = ", ".join(d.describe() for d in named)
            raise SpecError(
                f"{runs_dir}: --dataset {wanted!r} names several datasets ({keys}); give its key"
            )
        return named[0]
    if len(datasets) == 1:
        return datasets[0]
    classes = _header(test_scores)[1:]
    matching = [d for d in datasets if set(_header(d.labels("test"))[1:]) == set(classes)]
    if len(matching) > 1:
        ids = set(_image_ids(test_scores))
        matching = [d for d in matching if ids == set(_image_ids(d.labels("test")))]
    if len(matching) == 1:
        return matching[0]
    found = "none" if not matching else "more than one"
    raise SpecError(
        f"{test_scores}: its classes and image ids match {found} of the datasets in {runs_dir} "
        f"({listing}); pass --dataset KEY"
    )


def _header(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            return next(csv.reader(stream), [])
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def _image_ids(path: Path) -> list[str]:
    """The first column's values as written ("NA" is an id too); none if unreadable."""
    import pandas as pd

    try:
        frame = pd.read_csv(
            path, usecols=[0], dtype=str, keep_default_na=False, encoding="utf-8-sig"
        )
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    return frame.iloc[:, 0].tolist()


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def check_scores(path: Path, labels: Path, split: str) -> None:
    """One score file against its split's label file: every check of ``mlcbench evaluate``
    (images, classes, finite probabilities in [0, 1]), the labels' order, and the sidecar."""
    from mlcbench.evaluation import read_labelled_scores

    expected_classes = _header(labels)[1:]
    read_labelled_scores(path, labels)
    classes = _header(path)[1:]
    if classes != expected_classes:
        raise SpecError(
            f"{path}: the class columns are in another order than in {labels}; write them as "
            f"{', '.join(expected_classes)}"
        )
    _check_row_order(path, labels)
    _check_sidecar(path, labels, split, expected_classes)


def _check_row_order(path: Path, labels: Path) -> None:
    """The same ids as the labels (checked before), so only their order can differ."""
    ids, expected = _image_ids(path), _image_ids(labels)
    if ids != expected:
        line = next(
            n for n, (a, b) in enumerate(zip(ids, expected, strict=True), start=2) if a != b
        )
        raise SpecError(
            f"{path}: the rows are in another order than in {labels} (line {line} is image "
            f"{ids[line - 2]}, expected {expected[line - 2]}); write them in the labels' order"
        )


def _check_sidecar(path: Path, labels: Path, split: str, classes: Sequence[str]) -> None:
    """Where a sidecar (``scores_<split>.json``) comes with the scores, it must agree."""
    from mlcbench.files import sha256_file

    sidecar = _read_sidecar(path)
    if sidecar is None:
        return
    recorded, actual = sidecar.get("labels_sha256"), sha256_file(labels)
    if recorded is not None and recorded != actual:
        raise SpecError(
            f"{path.with_suffix('.json')}: labels_sha256 {str(recorded)[:12]}… is not the hash "
            f"of {labels} ({actual[:12]}…): these scores were made for other labels; submit "
            "them to the run whose labels they were made for"
        )
    if sidecar.get("split", split) != split:
        raise SpecError(
            f"{path.with_suffix('.json')}: says split {sidecar['split']!r}, but the file is "
            f"scores_{split}.csv; give each split its own scores"
        )
    if sidecar.get("class_names", list(classes)) != list(classes):
        raise SpecError(
            f"{path.with_suffix('.json')}: its class_names differ from {labels}'s columns; "
            "fix the sidecar (or leave it out)"
        )


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        value = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SpecError(f"{sidecar}: not a readable JSON sidecar ({error})") from None
    if not isinstance(value, dict):
        raise SpecError(f"{sidecar}: a sidecar is a JSON object (schema_version, labels_sha256…)")
    return value


def _check_free(folder: Path, submission: Submission, force: bool) -> None:
    if (folder / "metrics.json").is_file() and not force:
        raise SpecError(
            f"{folder}: submission {submission.name!r} seed {submission.seed} exists; pass "
            "--force to replace it, or another --name or --seed"
        )


def _check_same_model(
    runs_dir: Path, folder: Path, submission: Submission, target: RunDataset
) -> None:
    """Every seed under one name is the same model on the same dataset."""
    for path in sorted((runs_dir / SUBMISSIONS / submission.name).glob("*/metrics.json")):
        if path.parent == folder:
            continue
        other = _read_record(path)
        for field, mine in (
            ("dataset_key", target.key),
            ("backbone", submission.backbone),
            ("loss", submission.loss),
        ):
            if other.get(field) != mine:
                raise SpecError(
                    f"{path}: seed {other.get('seed')} of {submission.name!r} has {field} "
                    f"{other.get(field)!r}, this one {mine!r}; every seed of a name is one "
                    "model on one dataset: match it, or pick another --name"
                )


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))["submission"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SpecError(f"{path}: unreadable submission; submit it again with --force") from None
    return dict(record)


# --------------------------------------------------------------------------------------------
# Writing and scoring
# --------------------------------------------------------------------------------------------


def _write(
    folder: Path, score_files: dict[str, Path], submission: Submission, target: RunDataset
) -> dict[str, Any]:
    """Copy the score files with sidecars, then score the copies; ``metrics.json`` last."""
    from mlcbench import __version__
    from mlcbench.files import sha256_file

    (folder / "metrics.json").unlink(missing_ok=True)
    remove_stale_temporaries(folder)
    files = {}
    for split, source in score_files.items():
        copy = folder / source.name
        atomic_write_bytes(copy, source.read_bytes())
        labels_sha256 = sha256_file(target.labels(split))
        write_json(
            copy.with_suffix(".json"), _sidecar(source, split, labels_sha256, submission, target)
        )
        files[split] = {
            "file": copy.name,
            "sha256": sha256_file(copy),
            "labels_sha256": labels_sha256,
        }
    weights = target.manifest.get("class_weights")
    record = {
        **asdict(submission),
        "dataset": target.name,
        "dataset_key": target.key,
        "submitted_at": round(time.time(), 3),
        "mlcbench_version": __version__,
        "class_weights": weights,
        "files": files,
    }
    metrics = {
        "schema_version": SCHEMA_VERSION,
        "submission": record,
        **score_copies(folder, target, weights),
    }
    write_json(folder / "metrics.json", metrics)
    return metrics


def _sidecar(
    source: Path, split: str, labels_sha256: str, submission: Submission, target: RunDataset
) -> dict[str, Any]:
    """The copy's sidecar, in the layout of a cell's; the submitted sidecar's config, if any,
    is kept as ``trained_with``."""
    from mlcbench.scores import SCHEMA_VERSION as SCORES_SCHEMA

    submitted = _read_sidecar(source) or {}
    config: dict[str, Any] = {"submission": asdict(submission)}
    if isinstance(submitted.get("config"), dict):
        config["trained_with"] = submitted["config"]
    return {
        "schema_version": SCORES_SCHEMA,
        "dataset": str(target.manifest.get("dataset", target.name)),
        "split": split,
        "labels_file": target.labels(split).name,
        "labels_sha256": labels_sha256,
        "class_names": _header(target.labels(split))[1:],
        "config": config,
    }


def score_copies(
    folder: Path, target: RunDataset, class_weights: dict[str, float] | None
) -> dict[str, Any]:
    """Val and test under every threshold policy a cell is scored under, thresholds from val:
    :func:`mlcbench.evaluation.evaluate_policies` with the policies of
    :data:`mlcbench.results.POLICIES` (imported from their source, which spares torch)."""
    from mlcbench.evaluation import STANDARD_POLICIES, evaluate_policies, read_labelled_scores

    read = {
        split: read_labelled_scores(folder / f"scores_{split}.csv", target.labels(split))
        for split in SPLITS
    }
    ranked = {split: scores.ranked() for split, scores in read.items()}
    return evaluate_policies(
        ranked,
        read["test"].class_names,
        STANDARD_POLICIES,
        val=ranked["val"],
        class_weights=class_weights,
    )


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def add_submit_parser(
    commands: Any, accept_debug: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Add ``submit`` to the CLI's subcommands; ``accept_debug`` gives it ``--debug``."""
    submit_parser = commands.add_parser(
        "submit",
        help="add a model trained elsewhere to a run's leaderboard from its val/test scores",
        description="Check SCORES_DIR/scores_val.csv and scores_test.csv (image_id, then one\n"
        "probability column per class) against the label files of RUNS_DIR: the same image\n"
        "ids and class columns in the same order, probabilities in [0, 1], and the labels\n"
        "hash of a sidecar (scores_<split>.json) where there is one. Then copy them to\n"
        "RUNS_DIR/submissions/NAME/seed-N/ and score them as a cell is scored, so\n"
        "'mlcbench leaderboard RUNS_DIR' ranks NAME alongside the cells.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    submit_parser.add_argument(
        "scores_dir", type=Path, metavar="SCORES_DIR", help="holds scores_val.csv, scores_test.csv"
    )
    submit_parser.add_argument(
        "--runs", type=Path, required=True, metavar="RUNS_DIR", help="results of 'mlcbench run'"
    )
    submit_parser.add_argument(
        "--name", required=True, help="the leaderboard row's name (letters, digits, _ . -)"
    )
    submit_parser.add_argument(
        "--dataset",
        metavar="KEY|NAME",
        help="which of RUNS_DIR's datasets (default: the one the scores' classes and ids match)",
    )
    submit_parser.add_argument(
        "--backbone", default="", metavar="TEXT", help="shown in the Backbone column"
    )
    submit_parser.add_argument(
        "--loss", default="", metavar="TEXT", help="shown in the Loss column"
    )
    submit_parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="one run of several under one name; the leaderboard averages them (default 0)",
    )
    submit_parser.add_argument(
        "--description", default="", metavar="TEXT", help="one line under the tables"
    )
    submit_parser.add_argument("--url", default="", help="where the model or paper is")
    submit_parser.add_argument(
        "--force", action="store_true", help="replace this name and seed if submitted before"
    )
    accept_debug(submit_parser)


def run_submit_command(args: argparse.Namespace) -> int:
    """``mlcbench submit``: check, copy and score; print the test numbers and what is next."""
    submission = Submission(
        name=args.name,
        backbone=args.backbone,
        loss=args.loss,
        seed=args.seed,
        description=args.description,
        url=args.url,
    )
    folder, metrics = submit(
        args.scores_dir, args.runs, submission, dataset=args.dataset, force=args.force
    )
    fixed = metrics["test"]["threshold_0.5"]
    record = metrics["submission"]
    print(
        f"Submitted {record['name']!r} seed {record['seed']} for {record['dataset']} "
        f"(dataset {record['dataset_key']}) to {folder}/: test mAP {_percent(fixed['map'])}, "
        f"F1 {_percent(fixed['macro_f1'])}, F1-neg {_percent(fixed['f1_neg'])} "
        "at threshold 0.5."
    )
    print(f"Rebuild the leaderboard: mlcbench leaderboard {args.runs}")
    return 0


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"
