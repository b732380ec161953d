"""Score and label CSVs in the layout Sewer-ML's own evaluation uses (DESIGN §7).

``image_id`` first, then one column per class name: probabilities in [0, 1] for scores,
0/1 for labels. Each score file has a JSON sidecar naming its dataset, the hash of the
labels file it is to be read against, the class names and the cell's resolved config.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlcbench.errors import MlcbenchError
from mlcbench.files import atomic_write_text, sha256_file, write_json

SCHEMA_VERSION = 1
ID_COLUMN = "image_id"
#: float32 needs 9 significant digits to round-trip, so rankings and ties survive the file.
FLOAT_FORMAT = "%.9g"


def write_table(
    path: Path, image_ids: Sequence[str], class_names: Sequence[str], values: np.ndarray
) -> None:
    """Write scores (floats) or labels (0/1 integers) in the standard layout, atomically."""
    if values.shape != (len(image_ids), len(class_names)):
        raise MlcbenchError(
            f"{path}: {values.shape} values for {len(image_ids)} images × "
            f"{len(class_names)} classes"
        )
    frame = pd.DataFrame(values, columns=list(class_names))
    frame.insert(0, ID_COLUMN, list(image_ids))
    buffer = io.StringIO()
    is_float = np.issubdtype(values.dtype, np.floating)
    frame.to_csv(buffer, index=False, float_format=FLOAT_FORMAT if is_float else None)
    atomic_write_text(path, buffer.getvalue())


def read_table(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Image ids, class names and the (N, C) float64 values of a score or label CSV."""
    if not path.is_file():
        raise MlcbenchError(f"{path}: no such file")
    frame = pd.read_csv(path, dtype={ID_COLUMN: str})
    if frame.columns[0] != ID_COLUMN:
        raise MlcbenchError(f"{path}: first column must be {ID_COLUMN!r}, got {frame.columns[0]!r}")
    class_names = [str(c) for c in frame.columns[1:]]
    return frame[ID_COLUMN].tolist(), class_names, frame[class_names].to_numpy(np.float64)


def write_scores(
    path: Path,
    image_ids: Sequence[str],
    class_names: Sequence[str],
    probabilities: np.ndarray,
    *,
    dataset: str,
    split: str,
    labels_path: Path,
    config: Mapping[str, Any],
) -> None:
    """Write a score CSV and its sidecar (``<name>.json``); the sidecar goes last."""
    write_table(path, image_ids, class_names, probabilities)
    write_json(
        path.with_suffix(".json"),
        {
            "schema_version": SCHEMA_VERSION,
            "dataset": dataset,
            "split": split,
            "labels_file": labels_path.name,
            "labels_sha256": sha256_file(labels_path),
            "class_names": list(class_names),
            "config": dict(config),
        },
    )
