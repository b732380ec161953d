"""What the file-backed dataset plugins share: option checks, CSV reading with one-line
errors, 0/1 label columns and group-wise splitting. Registers nothing itself."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from mlcbench.data import DataError, split_counts
from mlcbench.errors import SpecError

if TYPE_CHECKING:
    import pandas as pd

#: The batch augmentations a spec may ask a dataset for (applied on the device).
Augmentation = Literal["hflip", "color_jitter", "rotate5"]
#: Smallest image side accepted: below it no backbone is meaningful.
MIN_IMAGE_SIZE = 8
#: Options of every file-backed dataset that change loading speed, not the data: a cell's id
#: leaves them out, so switching the cache on or off keeps every result.
RUNTIME_OPTIONS = ("cache",)
ONES = frozenset({"1", "1.0", "True", "true"})
ZEROS = frozenset({"0", "0.0", "False", "false"})


def folder(dataset: str, option: str, value: str | Path) -> Path:
    """The folder an option names; a SpecError naming the option and path if there is none."""
    path = Path(value).expanduser()
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise SpecError(f"{dataset}: option {option!r}: {path} {what}")
    return path


def file(dataset: str, option: str, value: str | Path) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise SpecError(f"{dataset}: option {option!r}: {path} {what}")
    return path


def check_image_size(dataset: str, image_size: int) -> None:
    if image_size < MIN_IMAGE_SIZE:
        raise SpecError(
            f"{dataset}: option 'image_size' must be at least {MIN_IMAGE_SIZE}, got {image_size}"
        )


def check_share(dataset: str, option: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise SpecError(f"{dataset}: option {option!r} must lie in (0, 1), got {value}")


def read_csv(dataset: str, path: Path, required: Sequence[str] = ()) -> pd.DataFrame:
    """A CSV as a pandas DataFrame of strings (empty cells are ''), its columns checked."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(
            f"{dataset}: {path}: not a readable CSV ({' '.join(str(error).split())})"
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise DataError(f"{dataset}: {path}: column {duplicated[0]!r} appears twice")
    require_columns(dataset, path, frame, required)
    return frame


def require_columns(dataset: str, path: Path, frame: pd.DataFrame, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        found = ", ".join(frame.columns[:30]) or "none"
        raise DataError(
            f"{dataset}: {path}: missing column{'s' * (len(missing) > 1)} "
            f"{', '.join(repr(c) for c in missing)} (found: {found})"
        )


def line_of(frame: pd.DataFrame, row: int) -> int:
    """The line in its CSV file of a frame's row (the header is line 1; rows keep their
    original index when a frame is a subset of a file)."""
    return int(frame.index[row]) + 2


def csv_header(dataset: str, path: Path) -> list[str]:
    """The column names of a CSV, read from its first line only."""
    import csv

    try:
        with path.open(encoding="utf-8", newline="") as stream:
            return [name.strip() for name in next(csv.reader(stream), [])]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{dataset}: {path}: not a readable CSV ({error})") from None


def binary_columns(
    dataset: str, path: Path, frame: pd.DataFrame, columns: Sequence[str]
) -> np.ndarray:
    """The named columns as 0/1 uint8 labels (N, K); any other value fails naming its line."""
    values = frame[list(columns)].apply(lambda column: column.str.strip())
    ones = values.isin(ONES).to_numpy()
    valid = ones | values.isin(ZEROS).to_numpy()
    if not valid.all():
        row, col = np.argwhere(~valid)[0]
        value = values.iat[row, col]
        shown = "an empty cell" if value == "" else repr(value)
        raise DataError(
            f"{dataset}: {path}: column {columns[col]!r} holds {shown} on line "
            f"{line_of(frame, row)}; "
            "labels must be 0 or 1"
        )
    return ones.astype(np.uint8)


def reject_duplicates(
    dataset: str, path: Path | str, what: str, values: Sequence[str], frame: pd.DataFrame
) -> None:
    """A value (id, file name) that appears twice fails, naming its second line."""
    seen: set[str] = set()
    for row, value in enumerate(values):
        if value in seen:
            raise DataError(
                f"{dataset}: {path}: {what} {value!r} appears twice (line {line_of(frame, row)})"
            )
        seen.add(value)


def unknown_name_error(dataset: str, option: str, name: str, known: Sequence[str]) -> SpecError:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    return SpecError(
        f"{dataset}: option {option!r}: unknown class {name!r}{hint} (known: {', '.join(known)})"
    )


def split_groups(groups: Sequence[str], shares: Sequence[float], seed: int) -> dict[str, int]:
    """Assign whole groups (e.g. patients) at random to splits in the given shares of groups.

    Returns, per group, the index of its split. The groups are sorted before they are
    shuffled with ``numpy.random.default_rng(seed)``, so the result depends only on the set
    of groups and the seed; the counts are the shares rounded by largest remainder.
    """
    unique = np.array(sorted(set(groups)))
    order = np.random.default_rng(seed).permutation(len(unique))
    counts = split_counts(len(unique), shares)
    assignment = np.repeat(np.arange(len(shares)), counts)
    by_group = np.empty(len(unique), dtype=np.int64)
    by_group[order] = assignment
    return {group: int(split) for group, split in zip(unique.tolist(), by_group, strict=True)}
