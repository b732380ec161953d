"""How much faster does a grid read its images from the decoded-image cache?

Writes a fixture of JPEGs (photo-like content: smooth colour fields with fine noise, quality
90), then reads every image once per epoch through a DataLoader, in one run, two ways:

- decoding the JPEG files each time (``ImageFiles``: what every cell and epoch would do
  without the cache), and
- from the decoded-image cache (``CachedImages``: memory-mapped uint8 arrays), after it was
  built once.

Both produce the same uint8 (3, 224, 224) tensors; the script checks that they agree.

    python benchmarks/speed/cache_speed.py [--images 2000] [--source-size 224] [--workers 0]

Each path gets one untimed warm-up epoch, then the median of ``--epochs`` timed epochs.

Target: the cached path at least 5x the images/s of decoding.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mlcbench.image_cache import (
    CachedImages,
    ImageFiles,
    ImageFormat,
    load_or_build,
    stat_files,
)

TARGET = 5.0


def write_fixture(folder: Path, count: int, width: int, height: int) -> list[str]:
    """``count`` photo-like JPEGs: low-frequency colour fields plus fine noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        coarse = rng.integers(0, 256, size=(6, 8, 3)).astype(np.uint8)
        field = np.asarray(
            Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        )
        noise = rng.normal(0, 12, size=field.shape)
        pixels = np.clip(field + noise, 0, 255).astype(np.uint8)
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


def epoch_rate(loader: DataLoader[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Images/s of one shuffled pass through ``loader``."""
    started = time.perf_counter()
    seen = 0
    for images, _labels in loader:
        seen += len(images)
    return seen / (time.perf_counter() - started)


def loader(
    dataset: Dataset[tuple[torch.Tensor, torch.Tensor]], workers: int
) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    return DataLoader(
        dataset, batch_size=64, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--source-size", default="224", help="JPEG size: 224 or WxH, e.g. 640x480")
    parser.add_argument("--size", type=int, default=224, help="side of the decoded images")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--epochs", type=int, default=5, help="timed passes of each path (median)")
    args = parser.parse_args()
    # What each DataLoader worker runs with: the numbers are per loading process.
    torch.set_num_threads(1)
    width, _, height = args.source_size.partition("x")
    source = (int(width), int(height or width))
    image_format = ImageFormat(args.size, "RGB")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        os.environ["MLCBENCH_CACHE_DIR"] = str(folder / "cache")
        paths = write_fixture(folder / "jpegs", args.images, *source)
        kilobytes = statistics.mean(Path(p).stat().st_size for p in paths) / 1000
        labels = np.zeros((len(paths), 3), dtype=np.float32)

        started = time.perf_counter()
        cache = load_or_build(paths, stat_files(paths), image_format, echo=lambda _: None)
        build_seconds = time.perf_counter() - started
        cached = CachedImages(cache, np.arange(len(paths)), labels)
        decoding = ImageFiles(paths, image_format, labels)
        for index in (0, len(paths) // 2, len(paths) - 1):
            if not torch.equal(cached[index][0], decoding[index][0]):
                raise SystemExit(f"image {index}: the cached and decoded pixels differ")

        # Epochs alternate, so load from elsewhere on the machine hits both paths alike.
        decode_loader, cache_loader = loader(decoding, args.workers), loader(cached, args.workers)
        epoch_rate(decode_loader), epoch_rate(cache_loader)  # warm-up: workers, page cache
        decode_rates, cache_rates = [], []
        for _ in range(args.epochs):
            decode_rates.append(epoch_rate(decode_loader))
            cache_rates.append(epoch_rate(cache_loader))
        decode_rate, cache_rate = statistics.median(decode_rates), statistics.median(cache_rates)

    print(
        f"{args.images} JPEGs {source[0]}x{source[1]} (quality 90, {kilobytes:.1f} kB each) "
        f"read as RGB {args.size}x{args.size}, batch 64, {args.workers} loader workers, "
        f"{os.cpu_count()} CPUs, 1 torch thread per loading process"
    )
    print(f"decode the JPEGs each time:  {decode_rate:9,.0f} images/s")
    print(f"decoded-image cache:         {cache_rate:9,.0f} images/s")
    print(
        f"cache built once in {build_seconds:.1f} s "
        f"({args.images / build_seconds:,.0f} images/s on a thread pool)"
    )
    print(f"ratio cache / decode: {cache_rate / decode_rate:6.1f}  (target ≥ {TARGET:g})")


if __name__ == "__main__":
    main()
