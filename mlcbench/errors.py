"""The one exception family mlcbench raises for problems a user must fix."""

from __future__ import annotations


class MlcbenchError(Exception):
    """An error whose message is written for the user: one line naming the cause and the fix.

    The CLI prints it without a traceback and exits non-zero (``--debug`` shows the traceback).
    """

    exit_code = 1


class SpecError(MlcbenchError):
    """A benchmark spec, a loss spec or plugin options are malformed."""

    exit_code = 2


class PluginError(MlcbenchError):
    """A plugin is unknown, failed to load, or returned something outside the contract."""

    exit_code = 2
