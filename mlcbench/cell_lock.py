"""One process trains a cell at a time: an exclusive, non-blocking lock per cell.

``fcntl.flock`` locks die with their process, so a killed run never leaves a cell locked.
(On a shared file system flock works across machines only where the file system supports
it, as on most NFSv4 and Lustre set-ups.)
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def cell_lock(path: Path) -> Iterator[bool]:
    """Yield True when this process holds the lock at ``path``, False when another does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            os.ftruncate(handle, 0)
            os.write(handle, f"{os.getpid()}\n".encode())
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)
