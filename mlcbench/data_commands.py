"""``mlcbench data``: build the modified COCO, and summarise the datasets of a spec.

``prepare-coco`` turns the official COCO 2017 instance files into the paper's modified COCO
(DESIGN §9); ``summary`` builds each dataset of a spec exactly as a run would and prints its
manifest: images, negatives and per-class counts per split.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcbench.errors import PluginError, SpecError

if TYPE_CHECKING:
    import numpy as np

    from mlcbench.data import MultiLabelDataset
    from mlcbench.spec import BenchmarkSpec

Echo = Callable[[str], None]

#: The 39 COCO categories the paper's modified COCO drops (DESIGN §9); 41 remain as classes.
MODIFIED_COCO_DROPPED = (
    "person",
    *("wine glass", "cup", "bicycle", "potted plant", "bowl"),
    *("snowboard", "surfboard", "baseball glove", "baseball bat", "tennis racket"),
    *("kite", "frisbee", "skis", "sports ball", "skateboard"),
    *("backpack", "umbrella", "handbag", "tie", "suitcase"),
    *("car", "motorcycle", "airplane", "bus", "train", "truck"),
    *("traffic light", "fire hydrant", "stop sign", "parking meter", "bench"),
    *("horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"),
)
COCO_PARTS = ("train2017", "val2017")
SPLIT_SHARES = {"train": 0.70, "val": 0.15, "test": 0.15}
COCO_SEED = 42
#: Annotation fields kept in the written files (segmentations are not needed for labels).
ANNOTATION_FIELDS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")

EXAMPLES = """\
examples:
  mlcbench data prepare-coco --coco-root /data/coco --out /data/coco/modified
  mlcbench data summary benchmarks/coco.yaml --var MLCBENCH_COCO_ROOT=/data/coco
  mlcbench data summary my_spec.yaml --json
"""


def add_data_parser(commands: Any, accept_debug: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``data prepare-coco`` and ``data summary`` to the CLI's subcommands;
    ``accept_debug`` gives each of them the CLI's ``--debug`` flag."""
    data = commands.add_parser(
        "data",
        help="prepare the modified COCO; summarise the datasets of a spec",
        description="Dataset tools: build the paper's modified COCO from COCO 2017, and print "
        "the manifest (images, negatives, per-class counts per split) of a spec's datasets.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    accept_debug(data)
    actions = data.add_subparsers(dest="data_command", metavar="ACTION")
    coco = actions.add_parser(
        "prepare-coco",
        help="build the modified COCO (DESIGN §9) from the COCO 2017 instance files",
        description="Merge COCO 2017 train and val, drop the paper's 39 categories, split "
        "70/15/15 stratified on each image's first remaining category (seed 42), and write "
        "instances_{train,val,test}.json and manifest.json. Images without a remaining "
        "category are kept as negatives.",
        epilog="example:\n  mlcbench data prepare-coco --coco-root /data/coco "
        "--out /data/coco/modified",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    coco.add_argument(
        "--coco-root",
        type=Path,
        required=True,
        help="COCO 2017 folder holding annotations/instances_{train,val}2017.json",
    )
    coco.add_argument("--out", type=Path, required=True, help="folder for the three files")
    coco.add_argument("--seed", type=int, default=COCO_SEED, help="split seed (paper: 42)")
    accept_debug(coco)
    summary = actions.add_parser(
        "summary",
        help="print images, negatives and per-class counts per split of a spec's datasets",
        description="Build every dataset of SPEC as a run would (checking every file and "
        "filling the decoded-image cache) and print its manifest.",
        epilog="example:\n  mlcbench data summary benchmarks/coco.yaml --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    summary.add_argument("spec", type=Path, help="benchmark spec (YAML)")
    summary.add_argument("--json", action="store_true", help="print JSON instead of tables")
    summary.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a spec variable ${NAME} (overrides the environment); repeatable",
    )
    summary.add_argument(
        "--no-decode",
        action="store_true",
        help="only read the annotations and check that the files exist: no decoding, no cache "
        "(unreadable images are then not found)",
    )
    accept_debug(summary)
    data.set_defaults(data_parser=data)


def run_data_command(args: argparse.Namespace) -> int:
    if getattr(args, "data_command", None) is None:
        args.data_parser.print_help()
        return 0
    if args.data_command == "prepare-coco":
        manifest = prepare_coco(args.coco_root, args.out, seed=args.seed)
        splits = manifest["splits"]
        print(
            f"Wrote {args.out}/instances_{{train,val,test}}.json and manifest.json: "
            + ", ".join(
                f"{name} {facts['images']:,} images ({facts['negatives']:,} negatives)"
                for name, facts in splits.items()
            )
        )
        return 0
    from mlcbench.spec import load_spec, parse_variables

    spec = load_spec(args.spec, parse_variables(args.var))
    summaries = summarise_spec(spec, decode=not args.no_decode)
    if args.json:
        print(json.dumps(summaries_json(summaries), indent=2))
    else:
        print(format_summaries(summaries))
    return 0


# ---------------------------------------------------------------------------- prepare-coco


def prepare_coco(
    coco_root: Path, out: Path, *, seed: int = COCO_SEED, echo: Echo | None = None
) -> dict[str, Any]:
    """Write the modified COCO of DESIGN §9 to ``out``; return its manifest.

    COCO 2017 train and val are merged (``file_name`` becomes ``train2017/…`` or
    ``val2017/…``, relative to ``coco_root``), the 39 categories of
    :data:`MODIFIED_COCO_DROPPED` and their annotations are removed, and the images are split
    70/15/15 by :func:`stratified_split` on each image's first remaining category: the
    category of its first kept annotation in file order (train2017's annotations, then
    val2017's). Images left without a category — including those that never had an
    annotation — form their own stratum and stay in the data as negatives.
    """
    import numpy as np

    from mlcbench.data import DataError
    from mlcbench.files import atomic_write_text, write_json

    echo = echo or (lambda message: print(message, file=sys.stderr))
    sources = [coco_root / "annotations" / f"instances_{part}.json" for part in COCO_PARTS]
    for source in sources:
        if not source.is_file():
            raise DataError(
                f"{source}: not found; --coco-root must be the COCO 2017 folder holding "
                "annotations/instances_train2017.json and annotations/instances_val2017.json"
            )
    loaded = []
    for source in sources:
        echo(f"reading {source}")
        loaded.append(_read_instances(source))
    categories = {c["id"]: c for c in loaded[0]["categories"]}
    other = {c["id"]: c for c in loaded[1]["categories"]}
    if {k: c["name"] for k, c in categories.items()} != {k: c["name"] for k, c in other.items()}:
        raise DataError(f"{sources[1]}: its categories differ from {sources[0]}'s")
    by_name = {c["name"]: cid for cid, c in categories.items()}
    absent = [name for name in MODIFIED_COCO_DROPPED if name not in by_name]
    if absent:
        raise DataError(
            f"{sources[0]}: has no category {absent[0]!r}; these are not the COCO 2017 "
            "instance annotations"
        )
    dropped = {by_name[name] for name in MODIFIED_COCO_DROPPED}
    kept = sorted(cid for cid in categories if cid not in dropped)

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    first_category: dict[Any, int] = {}
    seen: set[Any] = set()
    for part, source, data in zip(COCO_PARTS, sources, loaded, strict=True):
        ids = set()
        for image in data["images"]:
            if image["id"] in seen:
                raise DataError(f"{source}: image id {image['id']} is also in another file")
            seen.add(image["id"])
            ids.add(image["id"])
            images.append({**image, "file_name": f"{part}/{image['file_name']}"})
        for number, annotation in enumerate(data["annotations"]):
            if annotation["image_id"] not in ids:
                raise DataError(
                    f"{source}: annotation {annotation.get('id', f'#{number}')} is for image_id "
                    f"{annotation['image_id']}, which is not in the file's images"
                )
            if annotation["category_id"] not in categories:
                raise DataError(
                    f"{source}: annotation {annotation.get('id', f'#{number}')} has unknown "
                    f"category_id {annotation['category_id']}"
                )
            if annotation["category_id"] in dropped:
                continue
            annotations.append({k: annotation[k] for k in ANNOTATION_FIELDS if k in annotation})
            first_category.setdefault(annotation["image_id"], annotation["category_id"])
    images.sort(key=lambda image: image["id"])
    strata = np.array([first_category.get(image["id"], -1) for image in images])
    assignment = stratified_split(strata, tuple(SPLIT_SHARES.values()), seed)

    out.mkdir(parents=True, exist_ok=True)
    kept_categories = [categories[cid] for cid in kept]
    column = {cid: k for k, cid in enumerate(kept)}
    labels_of: dict[Any, set[int]] = {}
    for annotation in annotations:
        labels_of.setdefault(annotation["image_id"], set()).add(column[annotation["category_id"]])
    manifest_splits: dict[str, Any] = {}
    for number, split in enumerate(SPLIT_SHARES):
        split_images = [image for image, s in zip(images, assignment, strict=True) if s == number]
        ids = {image["id"] for image in split_images}
        split_annotations = [a for a in annotations if a["image_id"] in ids]
        content = {
            "info": {
                "description": f"Modified COCO ({split}): COCO 2017 train+val, "
                f"{len(MODIFIED_COCO_DROPPED)} categories dropped, 70/15/15 split stratified on "
                f"each image's first remaining category, seed {seed}; written by mlcbench",
            },
            "licenses": loaded[0].get("licenses", []),
            "images": split_images,
            "annotations": split_annotations,
            "categories": kept_categories,
        }
        atomic_write_text(
            out / f"instances_{split}.json", json.dumps(content, separators=(",", ":"))
        )
        counts = np.zeros(len(kept), dtype=np.int64)
        negatives = 0
        for image in split_images:
            present = labels_of.get(image["id"])
            if present:
                counts[list(present)] += 1
            else:
                negatives += 1
        manifest_splits[split] = {
            "images": len(split_images),
            "negatives": negatives,
            "negative_share": round(negatives / len(split_images), 4) if split_images else 0.0,
            "class_counts": {
                c["name"]: int(n) for c, n in zip(kept_categories, counts, strict=True)
            },
        }
    manifest = {
        "dataset": "modified COCO (DESIGN §9)",
        "sources": [str(source) for source in sources],
        "images_root": str(coco_root),
        "seed": seed,
        "shares": SPLIT_SHARES,
        "stratified_on": "category of each image's first kept annotation in file order "
        "(train2017, then val2017); images without one form the negative stratum",
        "dropped_categories": list(MODIFIED_COCO_DROPPED),
        "classes": [c["name"] for c in kept_categories],
        "splits": manifest_splits,
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def stratified_split(strata: np.ndarray, shares: Sequence[float], seed: int) -> np.ndarray:
    """The split index of each item, stratified on ``strata`` in the given shares.

    The strata are visited in sorted order; each one's members (in input order) are shuffled
    with one ``numpy.random.default_rng(seed)`` and cut at split boundaries that advance with
    the running count of items: after ``m`` items, split ``k`` ends at
    ``round(m · (share_0 + … + share_k))``. Every stratum is thus split in the shares up to
    one item per boundary, and the whole up to rounding, without small strata all rounding
    the same way.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(np.asarray(shares, dtype=np.float64) / float(sum(shares)))
    assignment = np.empty(len(strata), dtype=np.int64)
    seen = 0
    for stratum in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == stratum))
        before = np.floor(seen * cumulative + 0.5).astype(np.int64)
        seen += len(members)
        after = np.floor(seen * cumulative + 0.5).astype(np.int64)
        after[-1] = seen  # the last boundary is the running total, whatever the rounding
        counts = np.diff(np.concatenate([[0], after])) - np.diff(np.concatenate([[0], before]))
        assignment[members] = np.repeat(np.arange(len(shares)), counts)
    return assignment


def _read_instances(path: Path) -> dict[str, Any]:
    from mlcbench.data import DataError

    try:
        with path.open(encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not valid JSON ({' '.join(str(error).split())})") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise DataError(
            f"{path}: not a COCO instances file (needs images, annotations, categories)"
        )
    return data


# --------------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class DatasetSummary:
    """One dataset of a spec as built: its manifest per split and its notes."""

    name: str
    classes: tuple[str, ...]
    image_format: str
    splits: dict[str, dict[str, Any]]
    notes: tuple[str, ...]


def summarise_spec(spec: BenchmarkSpec, *, decode: bool = True) -> list[DatasetSummary]:
    """Build every dataset of the spec through its plugin, exactly as a run does, and
    summarise it. ``decode=False`` skips decoding (and the cache): file existence only."""
    from mlcbench import image_cache
    from mlcbench.data import MultiLabelDataset
    from mlcbench.grid import resolve_plugin
    from mlcbench.plugin_manager import default_plugins

    plugins = default_plugins()
    summaries: list[DatasetSummary] = []
    names: set[str] = set()
    for dataset_spec in spec.datasets:
        try:
            dataset = resolve_plugin(dataset_spec, plugins.datasets)
        except SpecError as error:
            raise SpecError(f"{spec.source}: {error}") from None
        args = () if dataset.variant is None else (dataset.variant,)
        with image_cache.decoding(enabled=decode):
            built = dataset.entry.factory(*args, **dataset.options)
        if not isinstance(built, MultiLabelDataset):
            raise PluginError(
                f"dataset plugin {dataset_spec.name!r} returned {type(built).__name__}, "
                "not a MultiLabelDataset"
            )
        name = dataset_spec.display_name
        if name in names:
            name = f"{name} ({dataset_spec.where})"
        names.add(name)
        mode = "RGB" if built.in_channels == 3 else f"{built.in_channels}-channel"
        summaries.append(
            DatasetSummary(
                name=name,
                classes=built.class_names,
                image_format=f"{built.image_size}x{built.image_size} {mode}",
                splits=split_summary(built),
                notes=tuple(built.notes),
            )
        )
    return summaries


def split_summary(dataset: MultiLabelDataset) -> dict[str, dict[str, Any]]:
    """The manifest of each split with the negative share and the skipped count spelled out."""
    summary: dict[str, dict[str, Any]] = {}
    for split, facts in dataset.manifest().items():
        images, negatives = facts["images"], facts["negatives"]
        summary[split] = {
            "images": images,
            "negatives": negatives,
            "negative_share": round(negatives / images, 4) if images else 0.0,
            "skipped": facts.get("skipped", 0),
            "class_counts": facts["class_counts"],
            **({"note": facts["note"]} if "note" in facts else {}),
        }
    return summary


def summaries_json(summaries: Sequence[DatasetSummary]) -> dict[str, Any]:
    """Per dataset, per split: images, negatives, negative_share, skipped, class_counts."""
    return {summary.name: summary.splits for summary in summaries}


def format_summaries(summaries: Sequence[DatasetSummary]) -> str:
    """Per dataset: a table of the splits, a table of class counts, and the notes."""
    from tabulate import tabulate

    blocks = []
    for summary in summaries:
        splits = summary.splits
        rows = [
            [
                split,
                f"{facts['images']:,}",
                f"{facts['negatives']:,}",
                f"{100 * facts['negative_share']:.1f}%",
                f"{facts['skipped']:,}",
            ]
            for split, facts in splits.items()
        ]
        split_table = tabulate(
            rows,
            headers=["Split", "Images", "Negatives", "Negative share", "Skipped"],
            colalign=("left", "right", "right", "right", "right"),
            disable_numparse=True,
        )
        count_rows = [
            [name, *(f"{facts['class_counts'][name]:,}" for facts in splits.values())]
            for name in summary.classes
        ]
        count_table = tabulate(count_rows, headers=["Class", *splits])
        lines = [
            f"{summary.name}: {len(summary.classes)} classes, {summary.image_format}",
            "",
            split_table,
            "",
            count_table,
        ]
        notes = list(summary.notes) + [
            f"{split}: {facts['note']}" for split, facts in splits.items() if "note" in facts
        ]
        if notes:
            lines += ["", *(f"note: {note}" for note in notes)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
