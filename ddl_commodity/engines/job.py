"""The body of every ``jobs/*.py`` entry point (what spark-submit runs): parse arguments, load the config,
run the experiment through its engine, report."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ddl_commodity.errors import DdlError
from ddl_commodity.runs import create_run_dir


def main(experiment: str | None = None, argv: list[str] | None = None) -> int:
    """``experiment``: the only experiment this entry point accepts (``None``: any)."""
    parser = argparse.ArgumentParser(
        prog=f"jobs/{experiment or 'experiment'}.py",
        description=f"Run {f'the {experiment}' if experiment else 'an'} experiment under spark-submit (or let "
        "`ddl run` do it).",
    )
    parser.add_argument("config", type=Path, help="experiment YAML file (see configs/)")
    parser.add_argument("--run-dir", type=Path, help="existing or new run directory (default: a new one)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the failed run in --run-dir from its last PS checkpoint")
    parser.add_argument("--master", help="spark://HOST:PORT the job runs on, overriding the config's cluster.master "
                        "(`ddl run --master` passes it; spark-submit's own --master only picks the cluster)")
    args = parser.parse_args(argv)
    # spark-submit merges the Python driver's stderr into stdout: keep the console for progress lines and
    # warnings, and the full log in the run directory.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from ddl_commodity.engines.run import run_experiment
        from ddl_commodity.experiments.registry import load

        exp, cfg = load(args.config, {"cluster": {"master": args.master}} if args.master else None)
        if experiment is not None and cfg.experiment != experiment:
            print(f"error: {args.config} is a {cfg.experiment} config, not {experiment}", file=sys.stderr)
            return 2
        run_dir = args.run_dir
        if run_dir is None or not run_dir.exists():
            run_dir = create_run_dir(
                run_dir.parent if run_dir else cfg.output.runs_dir, cfg.name, run_dir.name if run_dir else None
            )
        _log_to(run_dir / "job.log")
        summary = run_experiment(exp, cfg, run_dir, resume=args.resume)
    except DdlError as err:
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 1)
    print(f"run finished: {run_dir} ({summary['wall_seconds']:.0f} s)")
    return 0


def _log_to(path: Path) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in root.handlers:
        h.setLevel(logging.WARNING)
    root.addHandler(handler)
