"""One cell on several devices: how its processes start and how they share evaluation.

A cell runs inside a worker process (its own, or a Ray task). Lightning's ``ddp`` starts the
other ranks by running the command line again, which here would start the whole grid again;
so a cell starts them by spawning instead. That is the same DistributedDataParallel training,
started another way: ``ddp`` becomes ``ddp_spawn``, ``ddp_find_unused_parameters_true``
becomes ``ddp_spawn_find_unused_parameters_true``, and ``auto`` on several devices becomes
``ddp_spawn`` where Lightning would have picked ``ddp``.

Lightning pads the validation split so that every process gets the same number of batches,
which would count some images twice in the validation mAP that picks the checkpoint.
:class:`EvaluationSampler` gives each process its own share of the images, none repeated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

#: Lightning strategies that start their ranks by running the command line again.
_RELAUNCHING = ("ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true")


def process_count(accelerator: str, devices: Any, num_nodes: int = 1) -> int:
    """How many processes Lightning will run for these settings (``devices`` as Lightning
    reads it: a count, ``-1``/``auto`` for all, a list of indices or ``"0,1"``)."""
    if isinstance(devices, (list, tuple)):
        per_node = len(devices)
    elif str(devices) in ("auto", "-1"):
        per_node = torch.cuda.device_count() if accelerator in ("gpu", "cuda") else 1
    elif isinstance(devices, str) and "," in devices:
        per_node = len([d for d in devices.split(",") if d.strip()])
    else:
        per_node = int(devices)
    return max(1, per_node) * num_nodes


def lightning_strategy(strategy: str, processes: int) -> str:
    """The strategy name to hand Lightning: the spawning form of a relaunching one."""
    if strategy == "auto" and processes > 1:
        return "ddp_spawn"
    if strategy in _RELAUNCHING:
        return strategy.replace("ddp", "ddp_spawn", 1)
    return strategy


class EvaluationSampler(DistributedSampler):
    """Every image of a split exactly once over all processes, in order within each.

    A :class:`DistributedSampler`, so Lightning keeps it instead of putting in its padded one.
    Process ``r`` of ``w`` takes images ``r, r + w, r + 2w, …``: shares differ by at most one
    image, which evaluation allows because it has no collective step per batch. The process
    group is read when iterating, so one sampler serves before and after processes start.
    """

    def __init__(self, size: int) -> None:  # no super().__init__: it wants the group now
        self.size = size

    @staticmethod
    def _place() -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def __iter__(self) -> Iterator[int]:
        rank, world = self._place()
        return iter(range(rank, self.size, world))

    def __len__(self) -> int:
        rank, world = self._place()
        return len(range(rank, self.size, world))

    def set_epoch(self, epoch: int) -> None:
        """Evaluation order does not change between epochs."""
