"""The decoded-image cache: each image file decoded and resized once, then memory-mapped.

Decoding and resizing the same JPEGs for every epoch of every cell of a grid costs most of
a run's CPU time. The cache decodes every file of a dataset once per image format (square
side and colour mode) into uint8 arrays (N, C, S, S) held in ``.npy`` shards. Every cell and
every DataLoader worker maps those shards read-only, so reading a sample is a memory copy;
augmentation runs later, on tensors on the device.

Layout: ``<root>/<key>/`` holds ``index.json``, ``sources.txt`` (row i is the image of line
i) and ``images_00000.npy``, … . The root is ``$MLCBENCH_CACHE_DIR`` or
``~/.cache/mlcbench/images``. The key hashes the source files' paths, sizes and modification
times — not their bytes, which would cost as much as decoding them — together with the
format and the Pillow version that decodes. A changed, added or removed file gives a new key,
so the cache is rebuilt; old folders may be deleted at any time.

Builds are process-safe: the builder holds a lock file, writes into a temporary folder and
renames it into place, so concurrent cells wait for one build and never see half of one.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import shutil
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from mlcbench.data import DataError

CACHE_DIR_ENV = "MLCBENCH_CACHE_DIR"
#: Bumped whenever the stored pixels of the same files would change (decoder, resizing).
FORMAT_VERSION = 1
#: The transform, as recorded in the key: squash to S×S (no crop), bilinear with antialiasing.
RESIZE = "squash-bilinear-antialias"
#: Shards stay below this size, so no single file outgrows a filesystem's limits.
SHARD_BYTES = 1 << 30
INDEX_FILE = "index.json"
SOURCES_FILE = "sources.txt"
#: Rows decoded per task of the build's thread pool.
BUILD_CHUNK = 64
#: Seconds between progress lines of a long build.
PROGRESS_EVERY = 15.0
#: Lists shorter than this are stat'ed in this thread; longer ones by a pool (network disks).
PARALLEL_STAT_MIN = 2000

Mode = Literal["RGB", "L"]
Echo = Callable[[str], None]

_DECODING = contextvars.ContextVar("mlcbench_image_decoding", default=True)


@contextlib.contextmanager
def decoding(*, enabled: bool) -> Iterator[None]:
    """Within this block, file-backed datasets decode (and cache) their images up front only
    when ``enabled``; otherwise they check that the files exist and decode on read
    (``mlcbench data summary --no-decode``)."""
    token = _DECODING.set(enabled)
    try:
        yield
    finally:
        _DECODING.reset(token)


def decoding_enabled() -> bool:
    return _DECODING.get()


@dataclass(frozen=True)
class ImageFormat:
    """How the images of a dataset are stored: a square side in pixels and a colour mode."""

    size: int
    #: ``RGB`` (3 channels) or ``L`` (grayscale, 1 channel).
    mode: Mode = "RGB"

    @property
    def channels(self) -> int:
        return 3 if self.mode == "RGB" else 1

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)


@dataclass(frozen=True)
class FileStat:
    size: int
    mtime_ns: int


class UnreadableImage(Exception):
    """A file that exists but cannot be decoded as an image; the message says why."""


class UnreadableFile(Exception):
    """Raised by a fail-fast build: ``path`` could not be decoded, for ``reason``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def cache_root() -> Path:
    """Where caches live: ``$MLCBENCH_CACHE_DIR`` or ``~/.cache/mlcbench/images``."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "mlcbench" / "images"


def decode_image(path: str | os.PathLike[str], image_format: ImageFormat) -> np.ndarray:
    """One image file as uint8 (C, S, S): squashed to S × S (the aspect ratio is not kept and
    nothing is cropped, as in the paper), bilinear with antialiasing.

    JPEGs are decoded at the smallest power-of-two reduction that stays at or above S (the
    decoder's DCT scaling), which makes large photos several times cheaper to decode. Raises
    :class:`UnreadableImage` for a file Pillow cannot decode (corrupt, truncated, not an
    image).
    """
    from PIL import Image

    size, mode = image_format.size, image_format.mode
    try:
        with Image.open(path) as opened:
            opened.draft(mode, (size, size))
            image = _convert(opened, mode)
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImage(_reason(error, path)) from None
    if array.ndim == 2:
        return array[None].copy()
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def _convert(image: Any, mode: Mode) -> Any:
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grayscale (some X-ray PNGs): scale to 8 bits instead of clipping at 255.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        eight_bit = Image.fromarray(np.rint(values * (255.0 / top)).astype(np.uint8), "L")
        return eight_bit if mode == "L" else eight_bit.convert(mode)
    if image.mode != mode:
        return image.convert(mode)
    image.load()
    return image


def _reason(error: BaseException, path: str | os.PathLike[str] | None = None) -> str:
    """The error in one line, without the path the caller names anyway."""
    text = " ".join(str(error).split())
    if path is not None:
        text = text.replace(f" {str(path)!r}", "").replace(str(path), "the file")
    return text or type(error).__name__


def stat_files(paths: Sequence[str]) -> list[FileStat | None]:
    """Size and modification time of each path; None where it is not a readable file."""

    def one(path: str) -> FileStat | None:
        try:
            result = os.stat(path)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(result.st_mode):
            return None
        return FileStat(result.st_size, result.st_mtime_ns)

    if len(paths) < PARALLEL_STAT_MIN:
        return [one(path) for path in paths]
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, paths, chunksize=512))


def cache_key(
    paths: Sequence[str], stats: Sequence[FileStat | None], image_format: ImageFormat
) -> str:
    """Hash of the files (path, size, modification time) and of how they are decoded."""
    import PIL

    digest = hashlib.sha256()
    header = {
        "format_version": FORMAT_VERSION,
        "size": image_format.size,
        "mode": image_format.mode,
        "resize": RESIZE,
        "pillow": PIL.__version__,
        "files": len(paths),
    }
    digest.update(json.dumps(header, sort_keys=True).encode("utf-8"))
    for path, file_stat in zip(paths, stats, strict=True):
        size, mtime = (file_stat.size, file_stat.mtime_ns) if file_stat else (-1, -1)
        digest.update(f"\n{path}\0{size}\0{mtime}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class ImageCache:
    """A built cache on disk: row i holds the decoded image of the i-th source file."""

    directory: Path
    count: int
    shard_rows: int
    image_format: ImageFormat
    #: Rows whose file could not be decoded (left as zeros), with the reason.
    unreadable: Mapping[int, str]

    def shard_path(self, shard: int) -> Path:
        return self.directory / f"images_{shard:05d}.npy"

    @property
    def shards(self) -> int:
        return -(-self.count // self.shard_rows)

    @classmethod
    def open(cls, directory: Path) -> ImageCache | None:
        """The cache in ``directory``, or None when there is no complete one."""
        try:
            index = json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))
            cache = cls(
                directory=directory,
                count=int(index["count"]),
                shard_rows=int(index["shard_rows"]),
                image_format=ImageFormat(int(index["size"]), index["mode"]),
                unreadable={int(row): str(why) for row, why in index["unreadable"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if index.get("format_version") != FORMAT_VERSION:
            return None
        if not all(cache.shard_path(s).is_file() for s in range(cache.shards)):
            return None
        return cache


def load_or_build(
    paths: Sequence[str],
    stats: Sequence[FileStat | None],
    image_format: ImageFormat,
    *,
    fail_fast: bool = True,
    root: Path | None = None,
    workers: int | None = None,
    echo: Echo | None = None,
) -> ImageCache:
    """The cache of these files in this format: reused when it exists, built otherwise.

    ``fail_fast`` stops a build at the first file that cannot be decoded
    (:class:`UnreadableFile`) and keeps nothing; otherwise unreadable files are recorded in
    the cache and left for the caller to skip. Decoding runs on a thread pool (Pillow
    releases the GIL while it decodes and resizes).
    """
    root = cache_root() if root is None else root
    echo = echo or _stderr
    key = cache_key(paths, stats, image_format)
    directory = root / key
    cached = ImageCache.open(directory)
    if cached is not None:
        return _checked(cached, fail_fast, paths)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"image cache folder {root} cannot be created ({_reason(error)}); set "
            f"{CACHE_DIR_ENV} to a writable folder or the dataset option cache: false"
        ) from None
    with _exclusive(root / f"{key}.lock"):
        cached = ImageCache.open(directory)  # another process may have built it meanwhile
        if cached is not None:
            return _checked(cached, fail_fast, paths)
        _remove_leftovers(root, key)
        if directory.exists():  # not a finished cache (an older format, or tampered with)
            shutil.rmtree(directory)
        _check_space(root, len(paths), image_format)
        temporary = root / f"{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            cache = _build(temporary, paths, image_format, fail_fast, workers, echo)
            temporary.rename(directory)
        except OSError as error:
            shutil.rmtree(temporary, ignore_errors=True)
            # Without file locks (Windows) another builder may have won the rename.
            raced = ImageCache.open(directory)
            if raced is None:
                raise DataError(
                    f"image cache {directory} could not be written ({_reason(error)}); set "
                    f"{CACHE_DIR_ENV} to another folder or the dataset option cache: false"
                ) from error
            return _checked(raced, fail_fast, paths)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    return ImageCache(
        directory, cache.count, cache.shard_rows, cache.image_format, cache.unreadable
    )


def _checked(cache: ImageCache, fail_fast: bool, paths: Sequence[str]) -> ImageCache:
    if fail_fast and cache.unreadable:
        row = min(cache.unreadable)
        raise UnreadableFile(paths[row], cache.unreadable[row])
    return cache


def _build(
    folder: Path,
    paths: Sequence[str],
    image_format: ImageFormat,
    fail_fast: bool,
    workers: int | None,
    echo: Echo,
) -> ImageCache:
    folder.mkdir(parents=True)
    count = len(paths)
    bytes_per_image = int(np.prod(image_format.shape))
    shard_rows = max(1, min(count, SHARD_BYTES // bytes_per_image))
    cache = ImageCache(folder, count, shard_rows, image_format, {})
    shards = [
        np.lib.format.open_memmap(
            cache.shard_path(s),
            mode="w+",
            dtype=np.uint8,
            shape=(min(shard_rows, count - s * shard_rows), *image_format.shape),
        )
        for s in range(cache.shards)
    ]
    unreadable: dict[int, str] = {}
    stop = threading.Event()

    def decode_rows(start: int, end: int) -> None:
        for row in range(start, end):
            if stop.is_set():
                return
            try:
                image = decode_image(paths[row], image_format)
            except UnreadableImage as error:
                unreadable[row] = str(error)
                if fail_fast:
                    stop.set()
                    return
                continue
            shards[row // shard_rows][row % shard_rows] = image

    workers = workers or min(32, os.cpu_count() or 1)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = {
            pool.submit(decode_rows, start, min(count, start + BUILD_CHUNK))
            for start in range(0, count, BUILD_CHUNK)
        }
        total_tasks = len(pending)
        try:
            while pending:
                finished, pending = wait(
                    pending, timeout=PROGRESS_EVERY, return_when=FIRST_EXCEPTION
                )
                for future in finished:
                    future.result()
                if pending and not stop.is_set():
                    done = min(count, (total_tasks - len(pending)) * BUILD_CHUNK)
                    echo(f"image cache: decoded {done:,} of {count:,} images into {folder.parent}")
        except BaseException:
            stop.set()
            raise
    if fail_fast and unreadable:
        row = min(unreadable)
        raise UnreadableFile(paths[row], unreadable[row])
    for shard in shards:
        shard.flush()
    shards.clear()
    seconds = time.perf_counter() - started
    if seconds > 2.0:
        echo(
            f"image cache: {count:,} images decoded in {seconds:.1f} s "
            f"({count / seconds:,.0f} images/s); later runs read them from {folder.parent}"
        )
    (folder / SOURCES_FILE).write_text(
        "".join(f"{path}\n" for path in paths), encoding="utf-8", errors="surrogateescape"
    )
    index = {
        "format_version": FORMAT_VERSION,
        "count": count,
        "shard_rows": shard_rows,
        "size": image_format.size,
        "mode": image_format.mode,
        "resize": RESIZE,
        "unreadable": {str(row): unreadable[row] for row in sorted(unreadable)},
    }
    # The index is written last: a folder without it is never taken for a finished cache.
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    return ImageCache(folder, count, shard_rows, image_format, dict(sorted(unreadable.items())))


def _check_space(root: Path, count: int, image_format: ImageFormat) -> None:
    needed = count * int(np.prod(image_format.shape))
    free = shutil.disk_usage(root).free
    if needed > free:
        raise DataError(
            f"image cache needs {_bytes(needed)} in {root} but only {_bytes(free)} is free; "
            f"set {CACHE_DIR_ENV} to a larger disk or the dataset option cache: false"
        )


def _bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1000
    return f"{count:.1f} TB"


def _remove_leftovers(root: Path, key: str) -> None:
    """Temporary folders of builds that died (only the lock holder builds, so none is live)."""
    for leftover in root.glob(f"{key}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (released by the OS if the process dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: builders may race; the rename still keeps caches whole
        yield
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def check_headers(paths: Sequence[str], *, fail_fast: bool = True) -> dict[str, str]:
    """Files whose image header cannot be read, with the reason (the check used when the cache
    is off: cheap, but a file damaged past its header is only found when it is decoded)."""
    from PIL import Image

    def one(path: str) -> str | None:
        try:
            with Image.open(path):
                return None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            return _reason(error, path)

    bad: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 2)) as pool:
        for path, reason in zip(paths, pool.map(one, paths, chunksize=256), strict=True):
            if reason is not None:
                bad[path] = reason
                if fail_fast:
                    break
    return bad


class CachedImages(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The images of one split, read from a built cache. A sample is a view of the mapped
    file (changes to it never reach the file); batching copies it once.

    Picklable: each process (DataLoader worker) maps the shards itself on first use.
    """

    def __init__(self, cache: ImageCache, rows: np.ndarray, labels: np.ndarray) -> None:
        self.directory = cache.directory
        self.shard_rows = cache.shard_rows
        self.shard_paths = [str(cache.shard_path(s)) for s in range(cache.shards)]
        # Numbers in numpy arrays, not Python lists: forked workers then share the pages.
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
        if len(self.rows) != len(self.labels):
            raise ValueError(f"{len(self.rows)} rows but {len(self.labels)} label rows")
        self._shards: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def _shard(self, shard: int) -> np.ndarray:
        pixels = self._shards.get(shard)
        if pixels is None:
            # Copy-on-write mapping: samples are writable views of the page cache, so the
            # only copy of an image is the one into its batch (several times faster than
            # allocating each image first).
            pixels = self._shards[shard] = np.load(self.shard_paths[shard], mmap_mode="c")
        return pixels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        shard, offset = divmod(int(self.rows[index]), self.shard_rows)
        return torch.from_numpy(self._shard(shard)[offset]), self.labels[index]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_shards"] = {}
        return state


class ImageFiles(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The images of one split, decoded from their files on every read (cache off)."""

    def __init__(self, paths: Sequence[str], image_format: ImageFormat, labels: np.ndarray) -> None:
        # A numpy string array, not a list of str: forked workers then share the pages.
        self.paths = np.array([str(p) for p in paths], dtype=np.str_)
        self.image_format = image_format
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths but {len(self.labels)} label rows")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = str(self.paths[index])
        try:
            pixels = decode_image(path, self.image_format)
        except UnreadableImage as error:
            raise DataError(f"{path}: cannot decode image ({error})") from None
        return torch.from_numpy(pixels), self.labels[index]


def pixel_statistics(
    images: Dataset[tuple[torch.Tensor, torch.Tensor]], *, limit: int = 1000
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation in [0, 1] of up to ``limit`` evenly spaced
    images (deterministic, so every run of a benchmark normalises identically)."""
    count = len(images)  # type: ignore[arg-type]
    if count == 0:
        raise DataError("cannot measure pixel statistics of an empty split")
    picks = np.unique(np.linspace(0, count - 1, num=min(count, limit)).round().astype(np.int64))
    total: np.ndarray | None = None
    squares: np.ndarray | None = None
    pixels = 0
    for index in picks:
        image = images[int(index)][0].numpy().astype(np.float64) / 255.0
        flat = image.reshape(image.shape[0], -1)
        total = flat.sum(axis=1) if total is None else total + flat.sum(axis=1)
        squares = (flat**2).sum(axis=1) if squares is None else squares + (flat**2).sum(axis=1)
        pixels += flat.shape[1]
    assert total is not None and squares is not None
    mean = total / pixels
    std = np.sqrt(np.maximum(squares / pixels - mean**2, 1e-12))
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
