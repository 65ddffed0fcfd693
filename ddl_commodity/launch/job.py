"""The body of ``jobs/experiment.py``, the driver spark-submit runs: parse arguments, load the config, run the
experiment through its engine in spark-submit's SparkContext, report."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TextIO

from ddl_commodity.errors import DdlError, short_error
from ddl_commodity.runs import create_run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jobs/experiment.py",
        description="Run an experiment as the driver spark-submit started (`ddl run --spark-submit` does the same "
        "for you): spark-submit --master spark://HOST:7077 jobs/experiment.py CONFIG.yaml")
    parser.add_argument("config", type=Path, help="experiment YAML file (see configs/)")
    parser.add_argument("--run-dir", type=Path, help="existing or new run directory (default: a new one)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the failed run in --run-dir from its last PS checkpoint")
    parser.add_argument("--progress", action="store_true", help="live progress bars on stdout")
    parser.add_argument("--errors-to-log", action="store_true", help=argparse.SUPPRESS)  # the launcher says it
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console, log = sys.stderr, None
    try:
        from ddl_commodity.engines.run import run_experiment
        from ddl_commodity.experiments.registry import load

        exp, cfg = load(args.config)
        run_dir = args.run_dir
        if run_dir is None or not run_dir.exists():
            run_dir = create_run_dir(
                run_dir.parent if run_dir else cfg.output.runs_dir, cfg.name, run_dir.name if run_dir else None
            )
        log = run_dir / "job.log"
        console = _log_to(log)
        summary = run_experiment(exp, cfg, run_dir, resume=args.resume, progress=args.progress or None)
    except DdlError as err:
        if log is not None:
            logging.getLogger(__name__).error("%s", err)
        if not (args.errors_to_log and log is not None):
            print(f"error: {short_error(str(err))}" + (f" (log: {log})" if log else ""), file=console)
        return getattr(err, "exit_code", 1)
    print(f"run finished: {run_dir} ({summary['wall_seconds']:.0f} s)")
    return 0


def _log_to(path: Path) -> TextIO:
    """Log to ``path`` from here on, and send whatever else reaches this process's stderr there too
    (TensorFlow's and absl's native start-up lines, warnings, library tracebacks): spark-submit merges the
    driver's stderr into the console, which is for progress lines. Returns a stream to the console's stderr."""
    sys.stderr.flush()
    console = os.fdopen(os.dup(2), "w", buffering=1)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return console
