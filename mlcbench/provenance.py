"""Where a result came from: the machine it ran on and the project's commit."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), or the platform's best guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def gpu_model() -> str:
    """The first GPU's name, or '' without one."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""


@functools.cache
def git_commit() -> str:
    """The commit of the mlcbench checkout that ran, with '+changes' if it had any, or ''
    when mlcbench was installed from a package rather than a checkout."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return ""
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit.stdout.strip()[:12] + ("+changes" if dirty.stdout.strip() else "")
