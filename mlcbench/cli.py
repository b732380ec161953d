"""The ``mlcbench`` command: thin wrappers around library functions."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlcbench import __version__
from mlcbench.data_commands import add_data_parser, run_data_command
from mlcbench.errors import MlcbenchError
from mlcbench.submission import add_submit_parser, run_submit_command
from mlcbench.text import duration
from mlcbench.tuning import add_tune_parser, run_tune_command

EXAMPLES = """\
examples:
  mlcbench run benchmarks/quickstart.yaml            train every cell, score, rank
  mlcbench run benchmarks/quickstart.yaml --dry-run  list the cells without training
  mlcbench plugins                                   datasets, backbones, losses installed
  mlcbench leaderboard runs/quickstart               rebuild a leaderboard from results
  mlcbench submit preds/ --runs RUNS --name acme     rank a model trained elsewhere
  mlcbench data summary benchmarks/coco.yaml         images, negatives, classes per split
  mlcbench evaluate scores.csv --labels labels.csv   score predictions made anywhere
  mlcbench explain any_class --out any_class.png     what the any-class term rewards
  mlcbench tune SPEC --trials 20                     search the any-class α, λ and β (Optuna)
  mlcbench run SPEC --executor ray --wandb PROJECT   on a Ray cluster, logged to W&B
"""


def _accept_debug(command: argparse.ArgumentParser) -> None:
    """``--debug`` after a command too; SUPPRESS keeps a given top-level flag from being reset."""
    command.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlcbench",
        description="Benchmark multi-label classification losses on negative-heavy data.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mlcbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument(
        "-p",
        dest="plugin_options",
        action="append",
        default=[],
        metavar="NAME",
        help="load plugin distribution NAME even with MLCBENCH_DISABLE_PLUGIN_AUTOLOAD=1; "
        "-p no:NAME blocks it (repeatable)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="train and score every cell of a benchmark spec, then write its leaderboard",
        description="Train every dataset × backbone × loss × seed cell of SPEC, write score "
        "CSVs and metrics per cell, then the leaderboard. Complete cells are skipped.",
        epilog="example:\n  mlcbench run benchmarks/quickstart.yaml --out runs/try1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("spec", type=Path, help="benchmark spec (YAML)")
    run.add_argument(
        "--out",
        type=Path,
        help="results directory (default runs/<name>); the leaderboard then goes to "
        "OUT/leaderboards/ instead of leaderboards/",
    )
    run.add_argument("--dry-run", action="store_true", help="print the cells and exit")
    run.add_argument("--no-progress", action="store_true", help="hide the per-epoch progress bar")
    run.add_argument(
        "--force", action="store_true", help="re-run every cell from scratch, complete ones too"
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="also re-run cells that failed in an earlier run (by default they are reported)",
    )
    run.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a spec variable ${NAME}, e.g. a data folder (overrides the environment); "
        "repeatable",
    )
    run.add_argument(
        "--in-process",
        action="store_true",
        help="train cells in this process instead of one process each (for debugging)",
    )
    run.add_argument(
        "--wandb",
        metavar="PROJECT",
        help="also log every cell to this Weights & Biases project (grouped by benchmark)",
    )
    run.add_argument("--wandb-entity", metavar="ENTITY", help="W&B team or user")
    run.add_argument(
        "--wandb-mode",
        choices=["online", "offline", "disabled"],
        default=None,
        help="offline writes runs locally for a later 'wandb sync'",
    )
    run.add_argument(
        "--executor",
        choices=["local", "ray"],
        default=None,
        help="local: cells one after another here; ray: cells as Ray tasks on a cluster "
        "(pip install 'mlcbench[ray]')",
    )
    run.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="an existing Ray cluster (auto, ray://HOST:10001); default: start a local one",
    )
    run.add_argument("--cpus-per-cell", type=float, help="CPUs each Ray task asks for")
    run.add_argument("--gpus-per-cell", type=float, help="GPUs each Ray task asks for")
    _accept_debug(run)

    plugins = commands.add_parser(
        "plugins",
        help="list the installed datasets, backbones and losses",
        description="List every dataset, backbone and loss with the distribution and version "
        "that provides it, and the plugin distributions that were blocked or failed to load.",
        epilog="examples:\n  mlcbench plugins\n  mlcbench -p no:mlcbench-poly1 plugins   "
        "without one distribution's plugins",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _accept_debug(plugins)

    board = commands.add_parser(
        "leaderboard",
        help="rebuild a leaderboard from results on disk, without training",
        epilog="example:\n  mlcbench leaderboard runs/quickstart --name quickstart",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    board.add_argument("runs", type=Path, nargs="+", help="results directories of 'mlcbench run'")
    board.add_argument("--name", help="leaderboard name (default: the first directory's name)")
    board.add_argument("--out", type=Path, default=Path("leaderboards"), help="output folder")
    _accept_debug(board)
    add_data_parser(commands, _accept_debug)
    add_tune_parser(commands, _accept_debug)
    add_submit_parser(commands, _accept_debug)

    evaluate = commands.add_parser(
        "evaluate",
        help="score any score CSV against its labels (no training)",
        description="Score a score CSV (image_id, then one probability column per class) "
        "against a label CSV of the same layout, at a fixed threshold or with per-class "
        "thresholds tuned on val score and label files; print a summary, optionally write JSON.",
        epilog="examples:\n  mlcbench evaluate scores_test.csv --labels test.csv --json out.json\n"
        "  mlcbench evaluate scores_test.csv --labels test.csv --val-scores scores_val.csv "
        "--val-labels val.csv --beta 2 --class-weights sewerml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("scores", type=Path, help="score CSV: image_id, one column per class")
    evaluate.add_argument("--labels", type=Path, required=True, help="label CSV (0/1)")
    evaluate.add_argument("--val-scores", type=Path, help="val score CSV to tune thresholds on")
    evaluate.add_argument("--val-labels", type=Path, help="val label CSV")
    evaluate.add_argument(
        "--beta", type=float, help="with val files: the Fβ each threshold maximises (default 1)"
    )
    evaluate.add_argument(
        "--search",
        choices=["exact", "grid"],
        help="with val files: every distinct val score (default) or 0.05, 0.10, …, 0.95",
    )
    evaluate.add_argument(
        "--threshold", type=float, help="without val files: one threshold for all (default 0.5)"
    )
    evaluate.add_argument(
        "--class-weights",
        metavar="sewerml|FILE",
        help="adds CIW-F2: 'sewerml', a JSON object or a CSV with header class,weight",
    )
    evaluate.add_argument("--json", type=Path, metavar="OUT.json", help="write the result here")
    _accept_debug(evaluate)
    explain = commands.add_parser(
        "explain",
        help="draw what a loss term rewards (any_class: its loss over two class probabilities)",
        epilog="example:\n  mlcbench explain any_class --out any_class.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_argument("term", choices=["any_class"], help="the term to draw")
    explain.add_argument("--out", type=Path, required=True, help="PNG file to write")
    explain.add_argument(
        "--betas",
        default="0.02,0.1,0.5,1",
        help="comma-separated λ values, one panel each (default 0.02,0.1,0.5,1)",
    )
    _accept_debug(explain)
    return parser


def command_explain(args: argparse.Namespace) -> int:
    from mlcbench.explain import explain_any_class
    from mlcbench.options import coerce

    betas = [coerce(_number(text), float, "--betas") for text in args.betas.split(",")]
    print(f"Wrote {explain_any_class(args.out, betas)}")
    return 0


def _number(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.plugin_options or os.environ.get("MLCBENCH_DISABLE_PLUGIN_AUTOLOAD"):
        from mlcbench.plugin_manager import PluginSelection, select_plugins

        select_plugins(PluginSelection.from_options(args.plugin_options))
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "run":
            return command_run(args)
        if args.command == "plugins":
            return command_plugins()
        if args.command == "explain":
            return command_explain(args)
        if args.command == "data":
            return run_data_command(args)
        if args.command == "tune":
            return run_tune_command(args)
        if args.command == "submit":
            return run_submit_command(args)
        if args.command == "evaluate":
            from mlcbench.evaluation import command_evaluate

            return command_evaluate(args)
        return command_leaderboard(args)
    except MlcbenchError as error:
        if args.debug:
            raise
        print(f"mlcbench: error: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as error:
        if args.debug:
            raise
        print(
            f"mlcbench: error: unexpected {type(error).__name__}: {error} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("mlcbench: interrupted; finished cells are kept", file=sys.stderr)
        return 130


def command_run(args: argparse.Namespace) -> int:
    from mlcbench.grid import expand
    from mlcbench.plugin_manager import default_plugins
    from mlcbench.spec import load_spec, parse_variables

    spec = load_spec(args.spec, parse_variables(args.var))
    plugins = default_plugins()
    _report_failures(plugins)
    if args.dry_run:
        cells = expand(spec, plugins)
        for cell in cells:
            print(
                f"{cell.id}  {cell.dataset.spec.display_name}  {cell.backbone.spec.display_name}"
                f"  {cell.loss.display_name}  seed={cell.seed}"
            )
        print(f"{len(cells)} cells")
        return 0
    from mlcbench.runner import run_benchmark

    out_dir = args.out or Path("runs") / spec.name
    leaderboard_dir = args.out / "leaderboards" if args.out else Path("leaderboards")
    started = time.perf_counter()
    summary = run_benchmark(
        spec,
        plugins,
        out_dir=out_dir,
        leaderboard_dir=leaderboard_dir,
        options=run_options(args, spec),
    )
    board = f", leaderboard {summary.leaderboard}" if summary.leaderboard else ""
    print(
        f"{summary.cells} cells: {len(summary.trained)} trained, {len(summary.skipped)} "
        f"already complete, {len(summary.failed)} failed"
        + (f", {len(summary.busy)} busy in another process" if summary.busy else "")
        + f". Results in {out_dir}/{board}."
    )
    for cell_id, reason in summary.failed.items():
        print(f"  failed: cell {cell_id}: {reason}")
    print(f"Total wall time: {duration(time.perf_counter() - started)}")
    return 1 if summary.failed else 0


def run_options(args: argparse.Namespace, spec: Any) -> Any:
    """The spec's executor and logging settings, overridden by what the command line says."""
    from mlcbench.runner import RunOptions
    from mlcbench.spec import WandbConfig

    executor = spec.executor
    wandb = spec.logging.wandb
    if args.wandb:
        wandb = WandbConfig(args.wandb, args.wandb_entity, args.wandb_mode or "online")
    elif wandb is not None and (args.wandb_entity or args.wandb_mode):
        wandb = WandbConfig(
            wandb.project, args.wandb_entity or wandb.entity, args.wandb_mode or wandb.mode
        )
    return RunOptions(
        force=args.force,
        retry_failed=args.retry_failed,
        isolate=not args.in_process,
        progress=not args.no_progress,
        executor=args.executor or executor.name,
        ray_address=args.ray_address or executor.address,
        cpus_per_cell=executor.cpus_per_cell if args.cpus_per_cell is None else args.cpus_per_cell,
        gpus_per_cell=executor.gpus_per_cell if args.gpus_per_cell is None else args.gpus_per_cell,
        wandb=wandb,
    )


def command_plugins() -> int:
    from tabulate import tabulate

    from mlcbench.plugin_manager import default_plugins

    plugins = default_plugins()
    rows = []
    for kind, registry in (
        ("dataset", plugins.datasets),
        ("backbone", plugins.backbones),
        ("loss", plugins.losses),
    ):
        for name, entry in registry:
            role = f" ({entry.role})" if entry.role else ""
            rows.append(
                [
                    kind + role,
                    name,
                    entry.provider.distribution,
                    entry.provider.version,
                    entry.summary,
                ]
            )
    print(tabulate(rows, headers=["Kind", "Name", "Distribution", "Version", "Description"]))
    for provider in plugins.blocked:
        print(
            f"blocked: plugin {provider.plugin!r} from {provider.distribution} "
            f"{provider.version} (-p no:NAME, or MLCBENCH_DISABLE_PLUGIN_AUTOLOAD without -p)"
        )
    _report_failures(plugins)
    return 0


def command_leaderboard(args: argparse.Namespace) -> int:
    from mlcbench.leaderboard import write_leaderboard

    name = args.name or args.runs[0].resolve().name
    path = write_leaderboard(name, args.runs, args.out)
    print(f"Wrote {path} and {path.with_suffix('.csv')}")
    return 0


def _report_failures(plugins: object) -> None:
    for failure in getattr(plugins, "failures", []):
        print(f"mlcbench: warning: {failure.message()}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
