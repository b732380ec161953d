"""Small, dependency-free SVG plots: a forest plot of the gains (Δ with 95% intervals) and
the objective of a tuning study per trial.

Written by hand rather than with a plotting library so that the same results give the same
bytes on every machine, like the markdown they sit in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from mlcbench.bootstrap import Gain

ROW_HEIGHT = 22
LABEL_WIDTH = 330
PLOT_WIDTH = 360
MARGIN = 16
METRIC_TITLES = {"macro_f1": "F1", "macro_f2": "F2", "map": "mAP", "f1_neg": "F1-neg"}


def forest_svg(title: str, rows: Sequence[tuple[str, float, float, float, bool]]) -> str:
    """``rows``: (label, Δ, low, high, significant) in percentage points, one line each."""
    extent = max([1.0, *(abs(value) for row in rows for value in row[1:4])]) * 1.1
    height = MARGIN * 3 + ROW_HEIGHT * (len(rows) + 1)
    width = LABEL_WIDTH + PLOT_WIDTH + 2 * MARGIN

    def x(value: float) -> float:
        return LABEL_WIDTH + MARGIN + (value + extent) / (2 * extent) * PLOT_WIDTH

    top = MARGIN * 2 + ROW_HEIGHT // 2
    parts = [
        *_svg_start(width, height, title),
        f'<line x1="{x(0):.1f}" y1="{top - 8}" x2="{x(0):.1f}" '
        f'y2="{top + ROW_HEIGHT * len(rows)}" stroke="#888" stroke-dasharray="3,3"/>',
    ]
    for index, (label, delta, low, high, significant) in enumerate(rows):
        y = top + index * ROW_HEIGHT + ROW_HEIGHT / 2
        colour = "#1a7f37" if significant and delta > 0 else "#cf222e" if significant else "#555"
        parts += [
            f'<text x="{MARGIN}" y="{y + 4:.1f}">{escape(label)}</text>',
            f'<line x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}" '
            f'stroke="{colour}" stroke-width="2"/>',
            f'<circle cx="{x(delta):.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>',
        ]
    axis_y = top + ROW_HEIGHT * len(rows) + 14
    for tick in (-extent, -extent / 2, 0.0, extent / 2, extent):
        parts.append(
            f'<text x="{x(tick):.1f}" y="{axis_y}" text-anchor="middle">{tick:+.1f}</text>'
        )
    parts.append(
        f'<text x="{x(0):.1f}" y="{axis_y + 16}" text-anchor="middle">'
        "Δ (percentage points), 95% paired-bootstrap interval</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _svg_start(width: int, height: int, title: str) -> list[str]:
    """The opening tag, a white background and the bold title of a plot."""
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{MARGIN}" y="{MARGIN + 4}" font-weight="bold">{escape(title)}</text>',
    ]


def gains_rows(
    dataset: str, gains: Mapping[tuple[str, str, str, int], Mapping[str, Gain]]
) -> list[tuple[str, float, float, float, bool]]:
    """One plot row per (dataset, backbone, baseline → with, metric)."""
    rows = []
    for (backbone, baseline, treated, _), by_metric in gains.items():
        for metric, title in METRIC_TITLES.items():
            gain = by_metric[metric]
            label = f"{dataset} · {backbone}: {baseline} → {treated}, {title}"
            rows.append(
                (label, 100 * gain.delta, 100 * gain.low, 100 * gain.high, gain.significant)
            )
    return rows


TRIALS_WIDTH = 560
TRIALS_HEIGHT = 300
AXIS_MARGIN = 56
#: Up to this many trials, every trial number is a tick on the x axis.
MAX_TRIAL_TICKS = 20


def trials_svg(title: str, trials: Sequence[tuple[int, float, bool]], y_label: str) -> str:
    """``trials``: (trial number, value, pruned) in trial order. A complete trial is a filled
    dot at its objective, a pruned one a hollow grey dot at its last reported value; a step
    line follows the best complete value so far."""
    left, right, top, bottom = AXIS_MARGIN, MARGIN * 2, MARGIN * 3, AXIS_MARGIN
    plot_width = TRIALS_WIDTH - left - right
    plot_height = TRIALS_HEIGHT - top - bottom
    values = [value for _, value, _ in trials]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max(high - low, 0.01) * 0.1
    low, high = low - pad, high + pad
    last = max([1, *(number for number, _, _ in trials)])

    def x(number: float) -> float:
        return left + number / last * plot_width

    def y(value: float) -> float:
        return top + (high - value) / (high - low) * plot_height

    parts = [
        *_svg_start(TRIALS_WIDTH, TRIALS_HEIGHT, title),
        f'<line x1="{left}" y1="{top + plot_height}" x2="{left + plot_width}" '
        f'y2="{top + plot_height}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_height}" stroke="#888"/>',
    ]
    for step in range(5):
        tick = low + (high - low) * step / 4
        parts.append(
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.3f}</text>'
        )
    for number in range(last + 1) if last <= MAX_TRIAL_TICKS else sorted({0, last // 2, last}):
        parts.append(
            f'<text x="{x(number):.1f}" y="{top + plot_height + 16}" '
            f'text-anchor="middle">{number}</text>'
        )
    parts += [
        f'<text x="{left + plot_width / 2:.1f}" y="{TRIALS_HEIGHT - 12}" '
        'text-anchor="middle">trial</text>',
        f'<text x="14" y="{top + plot_height / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_height / 2:.1f})">{escape(y_label)}</text>',
    ]
    dots, best_line = [], []
    best = None
    for number, value, pruned in trials:
        if pruned:
            dots.append(
                f'<circle cx="{x(number):.1f}" cy="{y(value):.1f}" r="4" fill="white" '
                'stroke="#888"/>'
            )
            continue
        if best is not None:  # a step: level until this trial, then up to its value
            best_line.append(f"{x(number):.1f},{y(best):.1f}")
        best = value if best is None else max(best, value)
        best_line.append(f"{x(number):.1f},{y(best):.1f}")
        dots.append(f'<circle cx="{x(number):.1f}" cy="{y(value):.1f}" r="4" fill="#0969da"/>')
    if best_line:
        best_line.append(f"{x(last):.1f},{y(best or 0.0):.1f}")  # level to the last trial
        parts.append(
            f'<polyline points="{" ".join(best_line)}" fill="none" stroke="#1a7f37" '
            'stroke-width="2"/>'
        )
    parts += [*dots, *_trials_legend(left, top - 10), "</svg>"]
    return "\n".join(parts) + "\n"


def _trials_legend(left: int, baseline: int) -> list[str]:
    return [
        f'<circle cx="{left + 6}" cy="{baseline - 4}" r="4" fill="#0969da"/>',
        f'<text x="{left + 14}" y="{baseline}">complete</text>',
        f'<circle cx="{left + 90}" cy="{baseline - 4}" r="4" fill="white" stroke="#888"/>',
        f'<text x="{left + 98}" y="{baseline}">pruned (last value)</text>',
        f'<line x1="{left + 230}" y1="{baseline - 4}" x2="{left + 250}" y2="{baseline - 4}" '
        'stroke="#1a7f37" stroke-width="2"/>',
        f'<text x="{left + 256}" y="{baseline}">best so far</text>',
    ]
