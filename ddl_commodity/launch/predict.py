"""``ddl predict``: score a data set with a run's final model on the cluster's executors.

    summary = ddl_commodity.predict("runs/<run-id>", data="data/spectra", out="predictions")

The data set is Parquet (a directory, glob or URI, as ``data.source``); each executor loads the model once,
scores whole row groups (several a task) and writes one Parquet file per row group into ``out``: column
``row`` (the global index) and the experiment's prediction columns (a classifier's ``class`` and
``probability``, a regression's ``value``; the redshift experiment adds ``z``). The driver handles the row
groups' names only.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ddl_commodity.config import config_to_dict
from ddl_commodity.errors import UserInputError


def predict(run: str | Path, data: str, out: str | Path, *, master: str | None = None, spark: Any = None,
            env: str | Path | None = None) -> dict:
    """Score ``data`` with run ``run``'s final model; write the predictions as Parquet files into ``out``.

    Args:
        run: a finished run's directory (its ``config.yaml`` and ``model.keras``).
        data: the Parquet data set to score: a directory, a glob, or a URI (``file://``, ``hdfs://``, ``s3a://``).
        out: a new directory, on a disk every executor can write (the part files are written there).
        master: the Spark master to score on (default: the run's ``cluster.master``; ``embedded`` starts a
            local cluster around the job).
        spark: a ``SparkSession`` or ``SparkContext`` of yours to score on instead.
        env: an archive from ``ddl pack`` the executors run their Python from (as ``run(..., env=...)``).

    Returns:
        ``{"out", "rows", "files", "seconds"}``.

    Raises:
        UserInputError: no such run or model, ``out`` exists, or bad data (one line naming the file).
    """
    from ddl_commodity.data.parquet import pieces
    from ddl_commodity.launch.api import check_env, resolve

    run, out = Path(run).resolve(), Path(out).resolve()  # the executors' working directories are their own
    if not (run / "model.keras").is_file():
        raise UserInputError(f"{run}: no model.keras; give a finished run's directory")
    if out.exists():
        raise UserInputError(f"{out}: exists; choose a new directory for the predictions")
    check_env(env, spark)
    experiment, cfg = resolve(run / "config.yaml", master=master)
    inputs, _ = experiment.columns(cfg)
    found = pieces(data, inputs)
    t0 = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        written = _score(cfg, run, found, tuple(inputs), tmp, spark, env)
        tmp.chmod(0o755)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"out": str(out), "rows": sum(n for _, n in written), "files": len(written),
            "seconds": round(time.monotonic() - t0, 1)}


def _score(cfg, run: Path, found: list, inputs: tuple, tmp: Path, spark: Any, env: str | Path | None
           ) -> list[tuple[str, int]]:
    """The scoring job, on the caller's SparkContext or a driver JVM of its own (logs in ``<run>/predict``)."""
    from ddl_commodity.engines.predicting import ScoringJob, scorer
    from ddl_commodity.launch.driver import DriverJvm
    from ddl_commodity.launch.embedded import driver_target
    from ddl_commodity.runtime.session import ProcessContext
    from ddl_commodity.runtime.spark import tfos_spark_conf

    logs = run / "predict"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    with contextlib.ExitStack() as stack:
        if spark is not None:
            source = ProcessContext(getattr(spark, "sparkContext", spark))
        else:
            master, group, _ = driver_target(stack, cfg, logs)
            source = DriverJvm(master, cfg.cluster.driver_memory, logs / "driver.log", group=group)
            if env is not None:
                from ddl_commodity.launch.pack import ShippedEnvironment

                source = ShippedEnvironment(source, env)
        sc = source.open(tfos_spark_conf(cfg))
        try:
            sc.addFile(str((run / "model.keras").resolve()))
            job = ScoringJob(config_to_dict(cfg), "model.keras", inputs, str(tmp))
            # Several row groups a task: a task's start costs as much as scoring one row group on a
            # 1-core PC, and four tasks an executor core still let a fast executor take a slow one's share.
            tasks = max(1, min(len(found), 4 * sc.defaultParallelism))
            return sc.parallelize(found, tasks).mapPartitions(scorer(job)).collect()
        except Exception as err:  # Py4J's error wraps the executor's traceback
            raise _one_line(err) from None
        finally:
            source.close(sc)


def _one_line(err: Exception) -> Exception:
    """A task's bad data as the :class:`DataError` it raised; any other failure as :class:`RunFailed`."""
    from ddl_commodity.errors import DataError, RunFailed
    from ddl_commodity.runtime.failfast import exception_line, spark_error

    last = exception_line(spark_error(str(err)))
    kind, _, message = last.partition(": ")
    if kind.endswith("DataError"):
        return DataError(message)
    return RunFailed(f"scoring failed: {last}")
