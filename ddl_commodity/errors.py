"""Error types that the command line maps to exit codes.

Input problems (bad configuration, bad data files) are :class:`UserInputError` and end a command with
exit code 2 before any cluster starts; failures during a run are :class:`RunFailed` (exit code 1).
"""

from __future__ import annotations


class DdlError(Exception):
    """Base class of the toolkit's own errors."""


class UserInputError(DdlError):
    """Something the user gave us is wrong; the message names what and where. Exit code 2."""

    exit_code = 2


class ConfigError(UserInputError):
    """An experiment configuration is invalid."""


class DataError(UserInputError):
    """A data file is missing, unreadable or has the wrong layout."""


class RunFailed(DdlError):
    """A distributed run failed; the message carries the failing node and its traceback. Exit code 1."""

    exit_code = 1
