"""Many cells on a cluster: each cell is a Ray task with its own resources.

Ray schedules; mlcbench only states what each cell needs. Workers write to the same output
directory (a shared file system on a real cluster), take the same per-cell lock as a local
run, and record failures the same way, so resume and isolation work unchanged. A worker that
crashes (segfault, out-of-memory kill) fails its cell only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlcbench.errors import MlcbenchError
from mlcbench.files import write_json
from mlcbench.grid import Cell
from mlcbench.plugin_manager import Plugins
from mlcbench.results import CellPaths
from mlcbench.spec import BenchmarkSpec


def run_on_ray(
    pending: list[tuple[str, Cell]],
    spec: BenchmarkSpec,
    plugins: Plugins,
    out_dir: Path,
    options: Any,
    echo: Callable[[str], None],
) -> Iterator[tuple[str, Cell, Any]]:
    """Submit every pending cell as a Ray task; yield each one's attempt as it finishes."""
    from mlcbench.runner import Attempt

    ray = _import_ray()
    if not ray.is_initialized():
        if options.ray_address:
            ray.init(address=options.ray_address, log_to_driver=False)
        else:
            ray.init(log_to_driver=False, include_dashboard=False)
    task = ray.remote(max_retries=0)(_ray_attempt).options(
        num_cpus=options.cpus_per_cell, num_gpus=options.gpus_per_cell
    )
    # Inside a worker the cell runs in the worker's own process: Ray isolates it already.
    worker_options = dataclasses.replace(options, isolate=False, progress=False)
    absolute_out = out_dir.resolve()
    futures = {}
    for prefix, cell in pending:
        futures[task.remote(cell, spec, plugins, absolute_out, worker_options)] = (prefix, cell)
        echo(f"{prefix}: submitted to Ray")
    remaining = list(futures)
    while remaining:
        done, remaining = ray.wait(remaining, num_returns=1)
        prefix, cell = futures[done[0]]
        try:
            attempt = ray.get(done[0])
        except Exception as error:  # the worker died: Ray raises on the driver
            reason = f"the Ray worker failed: {type(error).__name__}: {_first_line(error)}"
            write_json(CellPaths(out_dir, cell.id).failure, {"cell_id": cell.id, "reason": reason})
            attempt = Attempt("failed", reason)
        yield prefix, cell, attempt


def _ray_attempt(
    cell: Cell, spec: BenchmarkSpec, plugins: Plugins, out_dir: Path, options: Any
) -> Any:
    from mlcbench.runner import attempt_cell

    return attempt_cell(cell, spec, plugins, out_dir, options)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MlcbenchError("executor 'ray' needs Ray: pip install 'mlcbench[ray]'") from None
    return ray


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else "(no message)"
