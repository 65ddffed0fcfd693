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


def short_error(message: str) -> str:
    """``message`` as one line for the console: a node's traceback is reduced to the exception it ended with
    (``... raised RuntimeError: fault injection ...``); the whole message stays in the run's status and logs."""
    text = message.removeprefix("RunFailed: ").strip()
    head, marker, traceback = text.partition("Traceback (most recent call last):")
    if not marker:
        return " ".join(line.strip() for line in text.splitlines() if line.strip())
    last = next((line.strip() for line in reversed(traceback.splitlines()) if line.strip()), "")
    head = " ".join(head.split()).rstrip(":")
    kind = last.split(":", 1)[0]
    if head.endswith(f"raised {kind}"):  # "... raised RuntimeError" + "RuntimeError: why" -> one sentence
        return f"{head}{last[len(kind):]}"
    return f"{head}: {last}"
