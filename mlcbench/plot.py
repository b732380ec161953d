"""A forest plot of the gains (Δ with 95% intervals) as a small, dependency-free SVG.

Written by hand rather than with a plotting library so that the same results give the same
bytes on every machine, like the markdown it sits in.
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
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{MARGIN}" y="{MARGIN + 4}" font-weight="bold">{escape(title)}</text>',
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
