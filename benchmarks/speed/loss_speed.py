"""Forward + backward time of the any-class loss against focal alone and a naive port.

At B = 256 images and C = 80 classes on the CPU, in one run:
- ``focal+any_class`` ÷ ``focal`` (both through mlcbench, class-balanced): target ≤ 1.3;
- ``focal+any_class`` ÷ a straightforward port of the formula that builds the weight matrix
  by cloning the targets and assigning through boolean masks: target ≤ 0.5.
torchvision's ``sigmoid_focal_loss`` and plain BCE are timed for scale. The naive port is
also checked to give the same value, so the comparison is like for like.

    python benchmarks/speed/loss_speed.py [--batch 256] [--classes 80]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import mlcbench

ALPHA, LAMBDA, BETA, GAMMA = 1.0, 0.1, 0.9999, 2.0


def naive_focal_any_class(
    logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor
) -> torch.Tensor:
    """DESIGN §5 transcribed line by line, with clones and boolean-mask assignments."""
    classes = logits.shape[1]
    any_target = (targets.sum(dim=1) > 0).float()
    weights = targets.clone()
    weights[targets == 0] = LAMBDA
    weights[any_target == 0] = 1.0
    any_logit = (weights * logits).sum(dim=1) / weights.sum(dim=1)

    def focal(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(z)
        ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        return ce * (1 - p_t) ** GAMMA

    per_image = focal(logits, targets).sum(dim=1) + ALPHA * focal(any_logit, any_target)
    image_weights = torch.zeros(logits.shape[0])
    positive = any_target == 1
    image_weights[positive] = (targets[positive] * class_weights[:classes]).sum(dim=1)
    image_weights[~positive] = class_weights[classes]
    return (image_weights * per_image).sum() / (targets.sum() + (~positive).sum())


def seconds_per_call(step: Callable[[], None], calls: int, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            step()
        samples.append((time.perf_counter() - started) / calls)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    batch, classes = args.batch, args.classes
    logits = (torch.randn(batch, classes, generator=generator) * 3).requires_grad_()
    positives = torch.rand(batch, 1, generator=generator) > 0.6  # 60 % negative images
    targets = ((torch.rand(batch, classes, generator=generator) < 0.05) & positives).float()
    class_counts = torch.randint(10, 5000, (classes,), generator=generator).tolist()
    negative_count = 20000
    ours = mlcbench.create_loss(
        {"name": "focal+any_class", "any_class": {"weight": ALPHA, "beta": LAMBDA}},
        class_counts=class_counts,
        negative_count=negative_count,
    )
    focal_alone = mlcbench.create_loss(
        "focal", class_counts=class_counts, negative_count=negative_count
    )
    weights = torch.cat([ours.image_class_weights, ours.negative_image_weight.view(1)])
    from torchvision.ops import sigmoid_focal_loss

    candidates: dict[str, Callable[[], torch.Tensor]] = {
        "focal+any_class (mlcbench)": lambda: ours(logits, targets),
        "focal alone (mlcbench)": lambda: focal_alone(logits, targets),
        "naive port of focal+any_class": lambda: naive_focal_any_class(logits, targets, weights),
        "torchvision sigmoid_focal_loss": lambda: sigmoid_focal_loss(
            logits, targets, alpha=-1, gamma=GAMMA, reduction="sum"
        ),
        "BCE alone (torch)": lambda: F.binary_cross_entropy_with_logits(logits, targets),
    }
    with torch.no_grad():
        difference = abs(
            float(ours(logits, targets) - naive_focal_any_class(logits, targets, weights))
        )

    def step(make: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            logits.grad = None
            make().backward()

        return run

    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for make in candidates.values():  # warm-up
        seconds_per_call(step(make), 20, 1)
    for _ in range(args.repeats):  # interleaved, so drift hits every candidate alike
        for name, make in candidates.items():
            samples[name] += seconds_per_call(step(make), args.calls // 10, 1)
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"forward+backward, B={batch}, C={classes}, {torch.get_num_threads()} CPU threads")
    for name, value in median.items():
        print(f"  {name:32s} {1000 * value:7.3f} ms")
    mine = median["focal+any_class (mlcbench)"]
    print(f"|mlcbench − naive| = {difference:.2e} (same formula)")
    print(
        f"ratio focal+any_class / focal alone: {mine / median['focal alone (mlcbench)']:.2f}"
        "  (target ≤ 1.3)"
    )
    print(
        f"ratio focal+any_class / naive port:  {mine / median['naive port of focal+any_class']:.2f}"
        "  (target ≤ 0.5)"
    )


if __name__ == "__main__":
    main()
