"""Small pieces of text the commands print."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """``42.3 s`` or ``4 min 49.0 s``."""
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:.1f} s" if minutes else f"{rest:.1f} s"
