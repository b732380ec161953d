"""Run one cell in a process of its own, so a crash, an out-of-memory kill or a segfault
costs that cell only.

Children come from a fork server that has already imported torch and Lightning, so a cell
starts in a fraction of a second, with a fresh interpreter state and no CUDA context
inherited from the parent.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PRELOAD = ["mlcbench.runner", "mlcbench.training"]
INTERRUPTED_EXIT = 130


@dataclass(frozen=True)
class ChildOutcome:
    """How a child ended: ``ok``, or the one-line reason it failed (and its traceback)."""

    ok: bool
    reason: str = ""
    interrupted: bool = False
    traceback: str = ""


def run_isolated(function: Callable[..., object], *args: Any) -> ChildOutcome:
    """Call ``function(*args)`` in a child process and report how it ended.

    The child reports an exception as a one-line reason on a pipe; a child killed by a
    signal (segfault, out-of-memory killer) is reported by that signal's name.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child, args=(sender, os.getpid(), function, args), daemon=False
    )
    process.start()
    sender.close()
    reason, details = "", ""
    try:
        try:
            if receiver.poll(None):
                reason, details = receiver.recv()
        except EOFError:
            pass  # the child died without a word: its exit code tells why
        process.join()
    except KeyboardInterrupt:
        process.terminate()
        process.join()
        raise
    finally:
        receiver.close()
    code = process.exitcode
    if code == 0:
        return ChildOutcome(ok=True)
    if code in (INTERRUPTED_EXIT, -signal.SIGINT):
        return ChildOutcome(ok=False, reason="interrupted", interrupted=True)
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (the out-of-memory killer sends SIGKILL)" if name == "SIGKILL" else ""
        reason = reason or f"the cell's process was killed by {name}{hint}"
    return ChildOutcome(
        ok=False,
        reason=reason or f"the cell's process exited with code {code}",
        traceback=details,
    )


def _child(
    sender: Any, runner: int, function: Callable[..., object], args: tuple[Any, ...]
) -> None:
    _die_with_runner(runner)
    try:
        function(*args)
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED_EXIT)
    except BaseException as error:
        sender.send((describe_error(error), traceback.format_exc()))
        sys.exit(1)
    finally:
        sender.close()


def _die_with_runner(runner: int) -> None:
    """End this child as soon as the run that started it is gone (killed with SIGKILL, say),
    so a killed run never leaves an orphan training its cell next to a re-run.

    The child's parent is the fork server, not the run, so this watches the run's pid: a
    pidfd where the platform has one (immune to pid reuse), else a liveness poll.
    """
    import threading

    def watch() -> None:
        try:
            handle = os.pidfd_open(runner)
        except (AttributeError, OSError):
            handle = None
        if handle is not None:
            import select

            select.select([handle], [], [])
        else:
            while True:
                try:
                    os.kill(runner, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="mlcbench-runner-watch", daemon=True).start()


def describe_error(error: BaseException) -> str:
    """One line: mlcbench's own errors are already written for the user; others get their type."""
    from mlcbench.errors import MlcbenchError

    text = " ".join(str(error).split())
    return text if isinstance(error, MlcbenchError) else f"{type(error).__name__}: {text}"
