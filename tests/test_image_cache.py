"""The decoded-image cache: decoding, hits, rebuilds, the off switch, workers, concurrency."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from dataset_fixtures import (
    cache_folders,
    corrupt,
    isolated_cache,
    make_user_csvs,
    touch_later,
    write_jpeg,
)
from mlcbench_plugins.datasets.csv_dataset import csv_dataset
from PIL import Image
from torch.utils.data import DataLoader

from mlcbench import image_cache
from mlcbench.data import SPLITS, DataError, MultiLabelDataset
from mlcbench.image_cache import (
    CachedImages,
    ImageFiles,
    ImageFormat,
    UnreadableFile,
    decode_image,
    load_or_build,
    stat_files,
)

__all__ = ["isolated_cache"]
pytestmark = pytest.mark.usefixtures("isolated_cache")
FORMAT = ImageFormat(16, "RGB")


@pytest.fixture
def jpegs(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(0)
    paths = [tmp_path / "src" / f"{k:03d}.jpg" for k in range(12)]
    for path in paths:
        write_jpeg(path, rng, size=(64, 40))
    return [str(p) for p in paths]


def build(paths: list[str], **options: Any) -> image_cache.ImageCache:
    return load_or_build(paths, stat_files(paths), options.pop("image_format", FORMAT), **options)


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = image_cache.decode_image

    def counting(path: Any, image_format: ImageFormat) -> np.ndarray:
        calls.append(str(path))
        return original(path, image_format)

    monkeypatch.setattr(image_cache, "decode_image", counting)
    return calls


def test_decoding_squashes_to_the_square_size_without_cropping(tmp_path: Path) -> None:
    # Left half red, right half blue, 80 × 20: a centre crop would show no red at all.
    pixels = np.zeros((20, 80, 3), dtype=np.uint8)
    pixels[:, :40, 0] = 255
    pixels[:, 40:, 2] = 255
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    decoded = decode_image(path, ImageFormat(10, "RGB"))
    assert decoded.dtype == np.uint8 and decoded.shape == (3, 10, 10)
    assert decoded[0, :, :4].min() > 200 and decoded[2, :, 6:].min() > 200
    gray = decode_image(path, ImageFormat(10, "L"))
    assert gray.shape == (1, 10, 10)


def test_the_cache_holds_exactly_the_decoded_images(jpegs: list[str]) -> None:
    cache = build(jpegs)
    dataset = CachedImages(cache, np.arange(len(jpegs))[::-1], np.eye(len(jpegs))[:, :3])
    for index, row in enumerate(range(len(jpegs) - 1, -1, -1)):
        image, labels = dataset[index]
        assert image.dtype == torch.uint8 and image.shape == (3, 16, 16)
        assert labels.tolist() == np.eye(len(jpegs))[index, :3].tolist()  # by split position
        np.testing.assert_array_equal(image.numpy(), decode_image(jpegs[row], FORMAT))
    assert (cache.directory / "sources.txt").read_text().splitlines() == jpegs


def test_a_second_build_is_a_hit_and_decodes_nothing(
    jpegs: list[str], monkeypatch: pytest.MonkeyPatch, isolated_cache: Path
) -> None:
    first = build(jpegs)
    calls = count_decodes(monkeypatch)
    second = build(jpegs)
    assert second.directory == first.directory and calls == []
    assert cache_folders(isolated_cache) == [first.directory]
    other_size = build(jpegs, image_format=ImageFormat(8, "RGB"))
    assert other_size.directory != first.directory and len(calls) == len(jpegs)


def test_a_changed_source_file_rebuilds_the_cache(
    jpegs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build(jpegs)
    write_jpeg(Path(jpegs[3]), np.random.default_rng(99), size=(64, 40))  # new content
    touch_later(Path(jpegs[3]))
    calls = count_decodes(monkeypatch)
    second = build(jpegs)
    assert second.directory != first.directory and len(calls) == len(jpegs)
    np.testing.assert_array_equal(
        CachedImages(second, np.array([3]), np.zeros((1, 1)))[0][0].numpy(),
        decode_image(jpegs[3], FORMAT),
    )
    assert build(jpegs[:-1]).directory not in (first.directory, second.directory)


def test_shards_split_a_large_cache(jpegs: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_cache, "SHARD_BYTES", 5 * 3 * 16 * 16)  # five images a shard
    cache = build(jpegs)
    assert (cache.shard_rows, cache.shards) == (5, 3)
    assert sorted(p.name for p in cache.directory.glob("*.npy")) == [
        "images_00000.npy",
        "images_00001.npy",
        "images_00002.npy",
    ]
    labels = np.arange(len(jpegs), dtype=np.float32)[:, None]
    dataset = CachedImages(cache, np.arange(len(jpegs))[::-1], labels)
    np.testing.assert_array_equal(dataset[0][0].numpy(), decode_image(jpegs[11], FORMAT))
    # A sample is a view of the mapped file: writing to it never reaches the cache.
    dataset[0][0].fill_(0)
    fresh = CachedImages(cache, np.arange(len(jpegs))[::-1], labels)
    np.testing.assert_array_equal(fresh[0][0].numpy(), decode_image(jpegs[11], FORMAT))


def test_unreadable_files_fail_fast_or_are_recorded(jpegs: list[str], isolated_cache: Path) -> None:
    corrupt(Path(jpegs[4]))
    with pytest.raises(UnreadableFile) as caught:
        build(jpegs)
    assert caught.value.path == jpegs[4]
    assert cache_folders(isolated_cache) == []  # the failed build left nothing behind
    assert not list(isolated_cache.glob("*.tmp-*"))
    recorded = build(jpegs, fail_fast=False)
    assert list(recorded.unreadable) == [4]
    with pytest.raises(UnreadableFile):  # a strict reader of a cache with a bad row
        build(jpegs)


def test_leftovers_of_a_killed_build_are_never_read(jpegs: list[str], isolated_cache: Path) -> None:
    key = image_cache.cache_key(jpegs, stat_files(jpegs), FORMAT)
    (isolated_cache / f"{key}.tmp-999999-dead").mkdir(parents=True)
    half = isolated_cache / key
    half.mkdir()
    (half / "images_00000.npy").write_bytes(b"half written")  # no index.json: not finished
    assert image_cache.ImageCache.open(half) is None
    cache = build(jpegs)
    assert cache.directory == half and not list(isolated_cache.glob("*.tmp-*"))
    np.testing.assert_array_equal(
        CachedImages(cache, np.array([0]), np.zeros((1, 1)))[0][0].numpy(),
        decode_image(jpegs[0], FORMAT),
    )


def test_not_enough_disk_space_is_one_line(
    jpegs: list[str], monkeypatch: pytest.MonkeyPatch, isolated_cache: Path
) -> None:
    monkeypatch.setattr(image_cache.shutil, "disk_usage", lambda _: SimpleNamespace(free=5000))
    with pytest.raises(DataError) as caught:
        build(jpegs)
    assert str(caught.value) == (
        f"image cache needs 9.2 kB in {isolated_cache} but only 5.0 kB is free; set "
        "MLCBENCH_CACHE_DIR to a larger disk or the dataset option cache: false"
    )


def _build_in_child(paths: list[str], queue: Any) -> None:
    cache = build(paths)
    queue.put(str(cache.directory))


def test_concurrent_builds_make_one_whole_cache(jpegs: list[str], isolated_cache: Path) -> None:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_build_in_child, args=(jpegs, queue)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    directories = {queue.get(timeout=5) for _ in children}
    assert len(directories) == 1 and cache_folders(isolated_cache) == [Path(directories.pop())]
    assert not list(isolated_cache.glob("*.tmp-*"))


def user_dataset(root: Path, **options: Any) -> MultiLabelDataset:
    files = {split: str(root / f"{split}.csv") for split in SPLITS}
    return csv_dataset(**files, image_size=16, mean=[0.5] * 3, std=[0.2] * 3, **options)


def test_the_off_switch_decodes_files_and_gives_the_same_pixels(
    tmp_path: Path, isolated_cache: Path
) -> None:
    fixture = make_user_csvs(tmp_path / "data", per_split=(8, 4, 4))
    off = user_dataset(fixture.root, cache=False)
    assert cache_folders(isolated_cache) == []
    assert isinstance(off.splits["train"].images, ImageFiles)
    on = user_dataset(fixture.root)
    assert isinstance(on.splits["train"].images, CachedImages)
    assert len(cache_folders(isolated_cache)) == 1
    for index in range(8):
        np.testing.assert_array_equal(
            off.splits["train"].images[index][0].numpy(),
            on.splits["train"].images[index][0].numpy(),
        )


def test_cache_off_checks_headers_up_front_and_names_a_file_damaged_later(tmp_path: Path) -> None:
    fixture = make_user_csvs(tmp_path / "data", per_split=(8, 4, 4))
    broken = fixture.root / "images" / "train" / "train_0002.jpg"
    broken.write_bytes(b"plain text")
    with pytest.raises(DataError, match=rf"^csv: {broken}: cannot decode image \("):
        user_dataset(fixture.root, cache=False)
    write_jpeg(broken, np.random.default_rng(1), size=(40, 40))
    dataset = user_dataset(fixture.root, cache=False)
    corrupt(broken)  # damaged after the check: found when read, still naming the file
    with pytest.raises(DataError, match=rf"^{broken}: cannot decode image \("):
        dataset.splits["train"].images[2]


def test_loader_workers_read_the_cache_and_the_dataset_pickles_without_mappings(
    tmp_path: Path,
) -> None:
    fixture = make_user_csvs(tmp_path / "data", per_split=(20, 4, 4))
    dataset = user_dataset(fixture.root)
    images = dataset.splits["train"].images
    assert isinstance(images, CachedImages)
    first = images[0][0]  # maps a shard in this process
    state = pickle.loads(pickle.dumps(images))
    assert state._shards == {} and torch.equal(state[0][0], first)
    expected = torch.stack([images[i][0] for i in range(len(images))])
    loader = DataLoader(images, batch_size=6, num_workers=2, shuffle=False)
    batches = list(loader)
    np.testing.assert_array_equal(torch.cat([b[0] for b in batches]).numpy(), expected.numpy())
    np.testing.assert_array_equal(
        torch.cat([b[1] for b in batches]).numpy(), dataset.splits["train"].labels
    )
