"""``mlcbench explain any_class``: what the any-class term rewards, as a picture.

For two classes, it draws the any-class loss term over the class probabilities (p1, p2):
for a positive image (class 1 present, class 2 absent) at several λ, and for a negative image
(where λ plays no part: every weight is 1). Dark is low loss, i.e. what the term rewards.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlcbench.errors import SpecError
from mlcbench.files import atomic_write_bytes

PANEL = 180
GAP = 36
TOP = 40
#: Anchors of a perceptually ordered colour map (viridis), low to high.
COLOURS = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64
)


def any_class_loss_surface(
    targets: Sequence[float], beta: float, resolution: int = PANEL
) -> np.ndarray:
    """The any-class term ``−log σ(s)`` (positive image) or ``−log(1 − σ(s))`` (negative)
    over a grid of (p1, p2) in (0, 1); rows run from p2 = 1 (top) to p2 = 0."""
    grid = (np.arange(resolution) + 0.5) / resolution
    p1, p2 = np.meshgrid(grid, grid[::-1])
    logits = np.log(np.stack([p1, p2], axis=-1)) - np.log1p(-np.stack([p1, p2], axis=-1))
    y = np.asarray(targets, dtype=np.float64)
    positive = y.max() > 0
    weights = y + beta * (1 - y) if positive else np.ones_like(y)
    any_logit = (logits * weights).sum(axis=-1) / weights.sum()
    # Stable −log σ(±s) = softplus(∓s).
    return np.logaddexp(0.0, -any_logit if positive else any_logit)


def _colour(values: np.ndarray, high: float) -> np.ndarray:
    scaled = np.clip(values / high, 0, 1) * (len(COLOURS) - 1)
    low_index = np.floor(scaled).astype(int).clip(0, len(COLOURS) - 2)
    fraction = (scaled - low_index)[..., None]
    colour = COLOURS[low_index] * (1 - fraction) + COLOURS[low_index + 1] * fraction
    return colour.astype(np.uint8)


def explain_any_class(out: Path, betas: Sequence[float] = (0.02, 0.1, 0.5, 1.0)) -> Path:
    """Write the picture to ``out`` (PNG) and return the path."""
    from PIL import Image, ImageDraw

    if out.suffix.lower() != ".png":
        raise SpecError(f"{out}: the picture is a PNG; name the file *.png")
    if any(not 0 <= beta <= 1 for beta in betas):
        raise SpecError(f"beta values must lie in [0, 1], got {list(betas)}")
    rows = [("positive image, y = (1, 0)", (1.0, 0.0)), ("negative image, y = (0, 0)", (0.0, 0.0))]
    width = GAP + len(betas) * (PANEL + GAP)
    height = TOP + len(rows) * (PANEL + GAP + 20) + 30
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    # Plain ASCII: the fallback font has no Greek letters or arrows.
    draw.text(
        (GAP, 10),
        "Any-class term over (p1 to the right, p2 upwards); dark = low loss = rewarded",
        fill="black",
    )
    high = 4.0
    for row, (title, targets) in enumerate(rows):
        y0 = TOP + row * (PANEL + GAP + 20)
        draw.text((GAP, y0), title, fill="black")
        for column, beta in enumerate(betas):
            x0 = GAP + column * (PANEL + GAP)
            surface = any_class_loss_surface(targets, beta)
            canvas.paste(Image.fromarray(_colour(surface, high)), (x0, y0 + 16))
            draw.text((x0, y0 + 18 + PANEL), f"beta (lambda) = {beta:g}", fill="black")
    legend_y = height - 22
    ramp = _colour(np.linspace(0, high, 200)[None, :].repeat(10, axis=0), high)
    canvas.paste(Image.fromarray(ramp), (GAP, legend_y))
    draw.text((GAP + 206, legend_y - 2), f"loss 0 ... {high:g}+", fill="black")
    buffer = _png_bytes(canvas)
    atomic_write_bytes(out, buffer)
    return out


def _png_bytes(image: object) -> bytes:
    import io

    stream = io.BytesIO()
    image.save(stream, format="PNG")  # type: ignore[attr-defined]
    return stream.getvalue()
