"""What a command starts: every descendant process's command line, polled while it runs."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import psutil

#: Command-line words by which a process is the ``ddl`` command, or a driver spark-submit started for it.
DDL_MARKS = ("ddl_commodity.cli", "ddl_commodity/cli.py", "jobs/experiment.py")


def run_watched(argv: Sequence[str], cwd: Path, timeout: float) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """``subprocess.run(argv)`` with text output captured, and the command lines of every process it started
    (children of children included), as seen every 0.2 s while it ran."""
    seen: dict[int, list[str]] = {}
    with subprocess.Popen(list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        done = threading.Event()

        def watch() -> None:
            root = psutil.Process(proc.pid)
            try:
                own = root.cmdline()
            except psutil.Error:
                return
            while not done.wait(0.2):
                try:
                    children = root.children(recursive=True)
                except psutil.NoSuchProcess:
                    return
                for child in children:
                    with contextlib.suppress(psutil.Error):  # ended meanwhile
                        cmdline = child.cmdline()
                        # A child between fork and exec still shows its parent's command line: not yet itself;
                        # one that exited and is not yet reaped (a zombie) shows none.
                        if cmdline and cmdline != own:
                            seen.setdefault(child.pid, cmdline)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        done.set()
        watcher.join()
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err), list(seen.values())


def ddl_processes(cmdlines: list[list[str]]) -> list[list[str]]:
    """The command lines that run the ``ddl`` command (or a ``ddl`` driver under spark-submit)."""
    return [c for c in cmdlines
            if any(mark in word for word in c for mark in DDL_MARKS) or any(w.endswith("/bin/ddl") for w in c)]

