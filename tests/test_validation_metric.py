"""The torchmetrics wrapper equals the functional mAP, in one process and across two."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mlcbench.metrics import average_precision_per_class
from mlcbench.validation_metric import MultiLabelAveragePrecision

IMAGES, CLASSES = 203, 6
# Uneven shards, so the gather has to handle processes holding different numbers of images.
SHARDS = ((0, 120), (120, IMAGES))


def split_with_ties() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.round(torch.rand(IMAGES, CLASSES, generator=generator), decimals=1)
    labels = (torch.rand(IMAGES, CLASSES, generator=generator) < 0.2).float()
    labels[:, 3] = 0  # a class without any positive
    return probabilities, labels


def expected_map(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    per_class = average_precision_per_class(probabilities.double().numpy(), labels.numpy())
    return float(np.nanmean(per_class))


def test_updates_over_batches_equal_the_functional_result():
    probabilities, labels = split_with_ties()
    metric = MultiLabelAveragePrecision()
    for start in range(0, IMAGES, 32):
        metric.update(probabilities[start : start + 32], labels[start : start + 32])
    assert metric.compute().item() == pytest.approx(expected_map(probabilities, labels), abs=1e-12)

    per_class = MultiLabelAveragePrecision(average=None)
    per_class.update(probabilities, labels.bool())
    np.testing.assert_allclose(
        per_class.compute().numpy(),
        average_precision_per_class(probabilities.double().numpy(), labels.numpy()),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.filterwarnings("ignore:The ``compute`` method.*before the ``update``")
def test_reset_starts_a_new_epoch_and_nothing_seen_is_zero():
    probabilities, labels = split_with_ties()
    metric = MultiLabelAveragePrecision()
    assert metric.compute().item() == 0.0
    metric.update(probabilities, labels)
    metric.compute()
    metric.reset()
    metric.update(probabilities[:50], labels[:50])
    assert metric.compute().item() == pytest.approx(
        expected_map(probabilities[:50], labels[:50]), abs=1e-12
    )


def test_all_negative_batches_give_zero():
    metric = MultiLabelAveragePrecision()
    metric.update(torch.rand(8, 3), torch.zeros(8, 3))
    assert metric.compute().item() == 0.0


def test_a_non_finite_probability_gives_nan_for_the_caller_to_stop_on():
    probabilities, labels = split_with_ties()
    probabilities[7, 2] = float("nan")
    metric = MultiLabelAveragePrecision()
    metric.update(probabilities, labels)
    assert metric.compute().isnan()
    per_class = MultiLabelAveragePrecision(average=None)
    per_class.update(probabilities, labels)
    assert per_class.compute().isnan().all()


def test_bad_shapes_and_options_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        MultiLabelAveragePrecision().update(torch.rand(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="average"):
        MultiLabelAveragePrecision(average="micro")


def test_states_are_not_saved_in_checkpoints():
    metric = MultiLabelAveragePrecision()
    metric.update(torch.rand(4, 3), torch.ones(4, 3))
    assert metric.state_dict() == {}


def _distributed_worker(rank: int, world_size: int, folder: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size
    )
    try:
        probabilities, labels = split_with_ties()
        start, end = SHARDS[rank]
        metric = MultiLabelAveragePrecision()
        for batch_start in range(start, end, 25):
            batch_end = min(batch_start + 25, end)
            metric.update(probabilities[batch_start:batch_end], labels[batch_start:batch_end])
        value = metric.compute().item()
        Path(folder, f"rank{rank}.json").write_text(json.dumps(value))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)
def test_two_processes_agree_on_the_map_of_all_images(tmp_path: Path):
    mp.spawn(_distributed_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    probabilities, labels = split_with_ties()
    expected = expected_map(probabilities, labels)
    # Not the mean of the two shards' mAPs: the gathered split is scored as one.
    shard_means = [expected_map(probabilities[a:b], labels[a:b]) for a, b in SHARDS]
    assert abs(np.mean(shard_means) - expected) > 1e-6
    for rank in range(2):
        value = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert value == pytest.approx(expected, abs=1e-12)
