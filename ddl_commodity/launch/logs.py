"""What reaches the console during a run: progress and results; everything else goes to the run's logs."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ddl_commodity.launch.driver import fd2_to, stderr_to

#: Lines TensorFlow's native code (absl, oneDNN, XLA) writes to fd 2 when it loads: noise on a console.
_NATIVE_NOISE = re.compile(r"^(I0000 |W0000 |WARNING: All log messages before absl"
                           r"|To enable the following instructions: |.*oneDNN custom operations)")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def native_noise_dropped() -> Iterator[None]:
    """Run the block with fd 2 in a temporary file, then pass on everything but TensorFlow's native start-up
    lines (a warning or an error still reaches the console; the run's own logs take the rest later)."""
    with tempfile.TemporaryFile() as captured:
        try:
            with fd2_to(captured.fileno()):
                yield
        finally:
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if not _NATIVE_NOISE.match(line):
                    print(line, file=sys.stderr)


@contextlib.contextmanager
def run_logged_to(path: Path) -> Iterator[None]:
    """Inside the block, the driver's log records (INFO and up) and whatever reaches fd 2 (library warnings,
    native start-up lines) append to ``path``; the console keeps stdout: progress lines and results."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with stderr_to(path):
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
