"""How ``ddl plan`` fails: one line on the console (``error: ...``, exit code 2), the whole story in a file.

A plan runs the user's model code (building it, profiling its layers on random inputs, one training step
with its loss); whatever goes wrong there is something about the model or the config to fix, not a crash of
the toolkit, so it is a :class:`PlanError`. The traceback goes to a log file the message names.
"""

from __future__ import annotations

import re
from pathlib import Path

from ddl_commodity.errors import UserInputError, joined_lines

#: A message line that already names its exception (``ValueError: Input 0 ...``).
_NAMED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b:")
#: Longest reason kept on the console line; the log file keeps all of it.
MAX_REASON = 400


class PlanError(UserInputError):
    """``ddl plan`` cannot plan the config: its model does not build or run, a split or profile is wrong, or
    the layer profile could not be made. Exit code 2."""


def one_line(err: BaseException | str) -> str:
    """``err`` as one line naming its type: TensorFlow's ``in user code:`` errors by their last line (the
    exception Keras raised, the frames before it are the profiler's), any other by all its lines joined
    (``; `` between them). A text is taken as it is, without a type to name.

    Args:
        err: an exception, or the text of one as another process printed it.
    """
    text = err if isinstance(err, str) else str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[-1] if lines and lines[0] == "in user code:" else joined_lines(text)
    if isinstance(err, BaseException) and not _NAMED.match(reason):
        reason = f"{type(err).__name__}: {reason}" if reason else type(err).__name__
    return reason if len(reason) <= MAX_REASON else reason[:MAX_REASON - 3] + "..."


def write_log(path: Path, text: str) -> Path:
    """``text`` (a traceback, a subprocess's output) at ``path``, its folder made; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
