"""``mlcbench data`` (prepare-coco, summary), spec variables and reference numbers, and the
paper's three benchmark specs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dataset_fixtures import (
    COCO_CATEGORIES,
    USER_CLASSES,
    CocoFixture,
    cache_folders,
    isolated_cache,
    make_coco_2017,
    make_user_csvs,
    read_json,
    write_json,
)

from mlcbench.cli import main
from mlcbench.data_commands import MODIFIED_COCO_DROPPED, prepare_coco, stratified_split
from mlcbench.errors import SpecError
from mlcbench.spec import load_spec, parse_spec, parse_variables

__all__ = ["isolated_cache"]
pytestmark = pytest.mark.usefixtures("isolated_cache")
REPO = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def coco_2017(tmp_path_factory: pytest.TempPathFactory) -> CocoFixture:
    return make_coco_2017(tmp_path_factory.mktemp("coco2017"))


@pytest.fixture(scope="module")
def prepared(coco_2017: CocoFixture, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("modified")
    argv = ["data", "prepare-coco", "--coco-root", str(coco_2017.root), "--out", str(out)]
    assert main(argv) == 0
    return out


# ----------------------------------------------------------------------------- prepare-coco


def test_the_paper_drops_39_categories_and_keeps_41() -> None:
    assert len(MODIFIED_COCO_DROPPED) == len(set(MODIFIED_COCO_DROPPED)) == 39
    assert set(MODIFIED_COCO_DROPPED) <= set(COCO_CATEGORIES.values())
    assert len(set(COCO_CATEGORIES.values()) - set(MODIFIED_COCO_DROPPED)) == 41


def test_prepare_coco_drops_categories_and_keeps_every_image(
    coco_2017: CocoFixture, prepared: Path
) -> None:
    files = {split: read_json(prepared / f"instances_{split}.json") for split in SPLITS}
    kept = [c["name"] for c in files["train"]["categories"]]
    assert len(kept) == 41 and not set(kept) & set(MODIFIED_COCO_DROPPED)
    assert all(f["categories"] == files["train"]["categories"] for f in files.values())
    ids = [image["id"] for f in files.values() for image in f["images"]]
    assert sorted(ids) == sorted(coco_2017.truth)  # every image once, negatives included
    for f in files.values():
        split_ids = {image["id"] for image in f["images"]}
        for annotation in f["annotations"]:
            assert annotation["image_id"] in split_ids
            assert COCO_CATEGORIES[annotation["category_id"]] not in MODIFIED_COCO_DROPPED
            assert "segmentation" not in annotation
        for image in f["images"]:
            part = coco_2017.part[image["id"]]
            assert image["file_name"] == f"{part}/{image['id']:012d}.jpg"
    manifest = read_json(prepared / "manifest.json")
    negatives = sum(
        1 for names in coco_2017.truth.values() if not names - set(MODIFIED_COCO_DROPPED)
    )
    assert sum(manifest["splits"][s]["negatives"] for s in SPLITS) == negatives == 30
    assert manifest["seed"] == 42 and manifest["dropped_categories"] == list(MODIFIED_COCO_DROPPED)


def test_prepare_coco_splits_70_15_15_stratified(coco_2017: CocoFixture, prepared: Path) -> None:
    manifest = read_json(prepared / "manifest.json")
    assert [manifest["splits"][s]["images"] for s in SPLITS] == [42, 9, 9]  # 60 images
    # Stratified on the first remaining category: each stratum is split 70/15/15 up to one.
    files = {split: read_json(prepared / f"instances_{split}.json") for split in SPLITS}
    first: dict[int, int] = {}
    for f in files.values():
        for annotation in f["annotations"]:
            first.setdefault(annotation["image_id"], annotation["category_id"])
    per_stratum: dict[int, Counter[str]] = {}
    for split, f in files.items():
        for image in f["images"]:
            per_stratum.setdefault(first.get(image["id"], -1), Counter())[split] += 1
    for counts in per_stratum.values():
        total = sum(counts.values())
        for split, share in zip(SPLITS, (0.7, 0.15, 0.15), strict=True):
            assert abs(counts[split] - share * total) <= 1.5


def test_prepare_coco_is_deterministic_with_seed_42(
    coco_2017: CocoFixture, prepared: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    prepare_coco(coco_2017.root, again, echo=lambda _: None)
    for split in SPLITS:
        name = f"instances_{split}.json"
        assert (again / name).read_bytes() == (prepared / name).read_bytes()
    other = tmp_path / "other"
    prepare_coco(coco_2017.root, other, seed=7, echo=lambda _: None)
    assert (other / "instances_val.json").read_bytes() != (
        prepared / "instances_val.json"
    ).read_bytes()


def test_stratified_split_is_exact_on_large_strata() -> None:
    strata = np.random.default_rng(0).integers(-1, 41, size=20_000)
    assignment = stratified_split(strata, (0.7, 0.15, 0.15), 42)
    assert np.bincount(assignment).tolist() == [14_000, 3_000, 3_000]
    for stratum in (-1, 0, 40):
        counts = np.bincount(assignment[strata == stratum], minlength=3)
        exact = np.array([0.7, 0.15, 0.15]) * counts.sum()
        assert np.all(np.abs(counts - exact) <= 1)
    np.testing.assert_array_equal(assignment, stratified_split(strata, (0.7, 0.15, 0.15), 42))


def test_the_coco_plugin_reads_the_prepared_files(
    coco_2017: CocoFixture, prepared: Path, tmp_path: Path
) -> None:
    from mlcbench_plugins.datasets.coco import coco

    dataset = coco(annotations=str(prepared), images=str(coco_2017.root), image_size=16)
    assert len(dataset.class_names) == 41 and dataset.class_names[0] == "boat"
    assert sum(dataset.splits[s].negatives for s in SPLITS) == 30
    assert dataset.splits["train"].images[0][0].shape == (3, 16, 16)


def test_prepare_coco_errors_are_one_line(
    coco_2017: CocoFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "prepare-coco", "--coco-root", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"mlcbench: error: {tmp_path / 'annotations' / 'instances_train2017.json'}: not found; "
        "--coco-root must be the COCO 2017 folder holding annotations/instances_train2017.json "
        "and annotations/instances_val2017.json\n"
    )
    broken = tmp_path / "broken"
    for part in ("train2017", "val2017"):
        data = read_json(coco_2017.annotations / f"instances_{part}.json")
        data["categories"] = [c for c in data["categories"] if c["name"] != "giraffe"]
        data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 25]
        write_json(broken / "annotations" / f"instances_{part}.json", data)
    assert main(["data", "prepare-coco", "--coco-root", str(broken), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines(keepends=True)[-1] == (
        f"mlcbench: error: {broken / 'annotations' / 'instances_train2017.json'}: has no "
        "category 'giraffe'; these are not the COCO 2017 instance annotations\n"
    )


# ----------------------------------------------------------------------------------- summary


def summary_spec(tmp_path: Path, data: Path, prepared: Path, coco_root: Path) -> Path:
    spec = tmp_path / "summary.yaml"
    spec.write_text(
        "name: summary\n"
        "datasets:\n"
        # In a YAML flow mapping {...} a ${VAR} value needs quotes; block style needs none.
        '  - {name: csv, train: "${DATA}/train.csv", val: "${DATA}/val.csv", '
        'test: "${DATA}/test.csv", image_size: 16, label: mine}\n'
        "  - name: coco\n"
        "    annotations: ${COCO}\n"
        "    images: ${COCO_IMAGES}\n"
        "    image_size: 16\n"
        "backbones: [smallcnn]\n"
        "losses: [bce]\n",
        encoding="utf-8",
    )
    return spec


def test_data_summary_json_per_dataset_and_split(
    tmp_path: Path,
    prepared: Path,
    coco_2017: CocoFixture,
    capsys: pytest.CaptureFixture[str],
    isolated_cache: Path,
) -> None:
    user = make_user_csvs(tmp_path / "data")
    spec = summary_spec(tmp_path, user.root, prepared, coco_2017.root)
    variables = ["--var", f"DATA={user.root}", "--var", f"COCO={prepared}"]
    variables += ["--var", f"COCO_IMAGES={coco_2017.root}"]
    assert main(["data", "summary", str(spec), "--json", *variables]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert list(summary) == ["mine", "coco"]
    for name in summary:
        assert list(summary[name]) == list(SPLITS)
        for facts in summary[name].values():
            assert {"images", "negatives", "class_counts"} <= set(facts)
    assert summary["mine"]["train"]["images"] == 32
    assert summary["mine"]["train"]["negatives"] == 19
    assert summary["mine"]["train"]["negative_share"] == round(19 / 32, 4)
    expected = {c: sum(c in labels for labels in user.truth["test"].values()) for c in USER_CLASSES}
    assert summary["mine"]["test"]["class_counts"] == expected
    coco_manifest = read_json(prepared / "manifest.json")["splits"]
    for split in SPLITS:
        assert summary["coco"][split]["images"] == coco_manifest[split]["images"]
        assert summary["coco"][split]["negatives"] == coco_manifest[split]["negatives"]
        assert summary["coco"][split]["class_counts"] == coco_manifest[split]["class_counts"]
    assert len(cache_folders(isolated_cache)) == 2  # the summary filled the run's cache
    assert main(["data", "summary", str(spec), *variables]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == "mine: 3 classes, 16x16 RGB"
    assert lines[2].split() == ["Split", "Images", "Negatives", "Negative", "share", "Skipped"]
    assert lines[4].split() == ["train", "32", "19", "59.4%", "0"]
    assert "\ncoco: 41 classes, 16x16 RGB\n" in text and "note: COCO instances from" in text


def test_data_summary_without_decoding_touches_no_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], isolated_cache: Path
) -> None:
    user = make_user_csvs(tmp_path / "data")
    (user.root / "images" / "val" / "val_0001.jpg").write_bytes(b"broken")
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ndatasets:\n  - name: csv\n    train: ${D}/train.csv\n    val: ${D}/val.csv\n"
        "    test: ${D}/test.csv\nbackbones: [smallcnn]\nlosses: [bce]\n",
        encoding="utf-8",
    )
    argv = ["data", "summary", str(spec), "--json", "--no-decode", "--var", f"D={user.root}"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["csv"]["val"]["images"] == 12
    assert cache_folders(isolated_cache) == []
    assert main(argv[:4] + argv[5:]) == 2  # decoding finds the broken file
    error = capsys.readouterr().err
    assert error.startswith(f"mlcbench: error: csv: {user.root / 'images/val/val_0001.jpg'}: ")
    assert error.count("\n") == 1


def test_data_command_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data"]) == 0
    assert "prepare-coco" in capsys.readouterr().out
    for action in ("prepare-coco", "summary"):
        with pytest.raises(SystemExit) as caught:
            main(["data", action, "--help"])
        assert caught.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: mlcbench data {action}")


# ------------------------------------------------------------------------- spec variables


def raw_spec(**dataset: Any) -> dict[str, Any]:
    return {
        "name": "x",
        "datasets": [{"name": "coco", **dataset}],
        "backbones": ["smallcnn"],
        "losses": ["bce"],
    }


def test_variables_come_from_vars_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLC_TEST_ROOT", "/env")
    spec = parse_spec(raw_spec(annotations="${MLC_TEST_ROOT}/a", images="$${not} ${MLC_TEST_ROOT}"))
    assert spec.datasets[0].options == {"annotations": "/env/a", "images": "${not} /env"}
    spec = parse_spec(raw_spec(annotations="${MLC_TEST_ROOT}/a"), variables={"MLC_TEST_ROOT": "/v"})
    assert spec.datasets[0].options["annotations"] == "/v/a"
    spec = parse_spec(raw_spec(annotations="${MLC_TEST_UNSET:-/fallback}"))
    assert spec.datasets[0].options["annotations"] == "/fallback"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "${MLC_TEST_UNSET}/x",
            "datasets[0].annotations: environment variable MLC_TEST_UNSET is not set; set it or "
            "pass --var MLC_TEST_UNSET=VALUE",
        ),
        (
            "${MLC_TEST_UNSET:?the folder holding the instance files}",
            "datasets[0].annotations: environment variable MLC_TEST_UNSET is not set; set it to "
            "the folder holding the instance files, or pass --var MLC_TEST_UNSET=VALUE",
        ),
        (
            "${MLC_TEST_EMPTY}",
            "datasets[0].annotations: environment variable MLC_TEST_EMPTY is empty; set it or "
            "pass --var MLC_TEST_EMPTY=VALUE",
        ),
        (
            "${1BAD}",
            "datasets[0].annotations: malformed variable reference '${1BAD}'; write ${NAME}, "
            "${NAME:-default} or ${NAME:?description}, and $$ for a literal $",
        ),
    ],
)
def test_unset_variables_fail_with_one_line_naming_them(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.delenv("MLC_TEST_UNSET", raising=False)
    monkeypatch.setenv("MLC_TEST_EMPTY", "")
    with pytest.raises(SpecError) as caught:
        parse_spec(raw_spec(annotations=value))
    assert str(caught.value) == message


def test_var_assignments_are_checked() -> None:
    assert parse_variables(["A=1", "B_2=x=y", "A=3"]) == {"A": "3", "B_2": "x=y"}
    with pytest.raises(SpecError, match=r"^--var: expected NAME=VALUE, got 'nothing'$"):
        parse_variables(["nothing"])


def test_run_reports_the_variable_to_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLCBENCH_SEWERML_ROOT", raising=False)
    assert main(["run", str(REPO / "benchmarks" / "sewerml.yaml"), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(
        "mlcbench: error: "
        f"{REPO / 'benchmarks' / 'sewerml.yaml'}: datasets[0].annotations: environment "
        "variable MLCBENCH_SEWERML_ROOT is not set; set it to the Sewer-ML folder holding"
    )
    assert error.endswith(", or pass --var MLCBENCH_SEWERML_ROOT=VALUE\n")


# ------------------------------------------------------------------- the paper's benchmarks

PAPER_SPECS = {
    "coco": "MLCBENCH_COCO_ROOT",
    "sewerml": "MLCBENCH_SEWERML_ROOT",
    "chestxray14": "MLCBENCH_CHESTXRAY14_ROOT",
}


@pytest.mark.parametrize("name", list(PAPER_SPECS))
def test_paper_specs_follow_the_recipe_and_declare_the_reference(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = REPO / "benchmarks" / f"{name}.yaml"
    spec = load_spec(path, {PAPER_SPECS[name]: str(tmp_path)})
    assert spec.datasets[0].name == name
    assert spec.datasets[0].options["image_size"] == 224
    assert [b.name for b in spec.backbones] == [
        "timm/tresnet_l",
        "timm/maxvit_small_tf_224",
        "timm/vit_base_patch16_224",
    ]
    assert all(b.options["pretrained"] is False for b in spec.backbones)
    assert [loss.name for loss in spec.losses] == [
        "bce",
        "bce+any_class",
        "focal",
        "focal+any_class",
    ]
    train = spec.train
    assert (train.optimizer, train.lr, train.weight_decay) == ("adamw", 1e-3, 0.05)
    assert (train.warmup_epochs, train.scheduler, train.min_lr, train.epochs) == (
        5,
        "cosine",
        1e-5,
        90,
    )
    assert (train.precision, train.gradient_clip) == ("auto", 1.0)
    (reference,) = spec.reference
    assert (reference.split, reference.threshold) == ("val", 0.5)
    assert len(reference.rows) == 8
    assert {row.dataset for row in reference.rows} == {name}
    assert {row.backbone for row in reference.rows} == {"TResNet-L", "MaxViT-S"}
    metric = "ciw_f2" if name == "sewerml" else "macro_f2"
    assert all(
        set(row.metrics()) == {"macro_f1", metric, "map", "f1_neg"} for row in reference.rows
    )
    argv = ["run", str(path), "--dry-run", "--var", f"{PAPER_SPECS[name]}={tmp_path}"]
    assert main(argv) == 0
    assert capsys.readouterr().out.endswith("12 cells\n")


def test_reference_numbers_match_design_section_10() -> None:
    spec = load_spec(REPO / "benchmarks" / "coco.yaml", {"MLCBENCH_COCO_ROOT": "/x"})
    rows = {(r.backbone, r.loss): r for r in spec.reference[0].rows}
    first = rows[("TResNet-L", "bce")]
    assert (first.f1, first.f2, first.map, first.f1_neg) == (40.93, 36.41, 42.52, 77.58)
    last = rows[("MaxViT-S", "focal+any_class")]
    assert (last.f1, last.f2, last.map, last.f1_neg) == (46.97, 46.85, 46.78, 76.34)
    sewer = load_spec(REPO / "benchmarks" / "sewerml.yaml", {"MLCBENCH_SEWERML_ROOT": "/x"})
    row = {(r.backbone, r.loss): r for r in sewer.reference[0].rows}[("MaxViT-S", "bce+any_class")]
    assert (row.f1, row.ciw_f2, row.map, row.f1_neg, row.f2) == (67.05, 68.16, 70.23, 92.96, None)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (
            {
                "source": "p",
                "rows": [{"dataset": "coco", "backbone": "B", "loss": "bce", "f1": 140}],
            },
            "reference.rows[0].f1: a percentage in [0, 100], got 140.0",
        ),
        (
            {
                "source": "p",
                "rows": [{"dataset": "cocoo", "backbone": "B", "loss": "bce", "f1": 1}],
            },
            "reference.rows[0].dataset: unknown dataset 'cocoo' — did you mean 'coco'? "
            "(known: coco)",
        ),
        (
            {"source": "p", "rows": [{"dataset": "coco", "backbone": "B", "loss": "bce"}]},
            "reference.rows[0]: give at least one of f1, f2, ciw_f2, map, f1_neg",
        ),
        (
            {
                "source": "p",
                "rows": [{"dataset": "coco", "backbone": "B", "loss": "bce", "f1neg": 1}],
            },
            "reference.rows[0]: unknown key 'f1neg' — did you mean 'f1_neg'? (known: backbone, "
            "ciw_f2, dataset, f1, f1_neg, f2, loss, map)",
        ),
        (
            {
                "source": "p",
                "rows": [{"dataset": "coco", "backbone": "B", "loss": "bce", "f1": 1}] * 2,
            },
            "reference.rows[1]: repeats reference.rows[0] (same dataset, backbone, loss)",
        ),
        ({"rows": []}, "reference: missing 'source'; a reference needs source and rows"),
        (
            {"source": "p", "split": "dev", "rows": [{"dataset": "coco"}]},
            "reference.rows[0]: missing 'backbone'",
        ),
    ],
)
def test_reference_rows_are_validated(reference: dict[str, Any], message: str) -> None:
    raw = {**raw_spec(annotations="/a", images="/i"), "reference": reference}
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    assert str(caught.value) == message
