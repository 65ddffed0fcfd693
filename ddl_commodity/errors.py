"""Error types that the command line maps to exit codes.

Input problems (bad configuration, bad data files) are :class:`UserInputError` and end a command with
exit code 2 before any cluster starts; failures during a run are :class:`RunFailed` (exit code 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


class DdlError(Exception):
    """Base class of the toolkit's own errors."""


class UserInputError(DdlError):
    """Something the user gave us is wrong; the message names what and where. Exit code 2."""

    exit_code = 2


class ConfigError(UserInputError):
    """An experiment configuration is invalid."""


class DataError(UserInputError):
    """A data file is missing, unreadable or has the wrong layout."""


#: What ended a node, as :attr:`NodeFailure.cause` says it.
FAILURE_CAUSES = (
    "raised",         # the node's code raised an exception (detail: the node's traceback)
    "lost",           # its Spark executor is gone (killed, out of memory, its machine lost)
    "silent",         # no heartbeat within its window: hung, frozen, killed or cut off
    "out_of_memory",  # the kernel's OOM killer ended a process at the node's memory cap
    "spark",          # Spark failed the run and no node could be named
)


@dataclass(frozen=True)
class NodeFailure:
    """One node's failure, as the collector and the watchdog decided it.

    Args:
        node: the TF node (``worker-1``, ``ps-0``) or cluster node (``node2``) it happened on; ``None`` when
            Spark failed and no node could be named.
        cause: one of :data:`FAILURE_CAUSES`.
        detail: what a person reads: the sentence naming the node, what happened and why as far as the driver
            can tell (a raised exception's traceback included).
    """

    node: str | None
    cause: str
    detail: str

    def __str__(self) -> str:
        return self.detail

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> NodeFailure:
        return cls(doc.get("node"), str(doc.get("cause", "spark")), str(doc.get("detail", "")))


class RunFailed(DdlError):
    """A distributed run failed. Exit code 1.

    Args:
        message: the whole story for the run's status and logs (the first failing node and its traceback).
        failures: the failures behind it, the first one the cause; empty when the run failed otherwise.
        run_dir: the run's directory (its ``status.json`` and logs).
    """

    exit_code = 1

    def __init__(self, message: str, failures: Iterable[NodeFailure] = (), run_dir: Path | None = None) -> None:
        super().__init__(message)
        self.failures: list[NodeFailure] = list(failures)
        self.run_dir = run_dir


def failures_of(docs: Sequence[dict] | None) -> list[NodeFailure]:
    """:class:`NodeFailure` objects from their ``to_dict()`` form (a run's ``status.json``)."""
    return [NodeFailure.from_dict(d) for d in docs or () if isinstance(d, dict)]


def joined_lines(text: str) -> str:
    """A message of several lines as one console line: a config error puts each problem on a line of its own,
    joined here by ``; `` (by a space after a line ending in ``:`` or ``,``, which the next line continues)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "".join(f"{'' if i == 0 else ' ' if lines[i - 1].endswith((':', ',')) else '; '}{line}"
                   for i, line in enumerate(lines))


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
