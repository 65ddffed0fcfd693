"""``ddl_commodity.run``: one call runs an experiment, from Python or from ``ddl run``.

    import ddl_commodity

    summary = ddl_commodity.run("configs/quickstart.yaml")              # an embedded local cluster
    summary = ddl_commodity.run("my.yaml", master="spark://head:7077")  # your PCs
    summary = ddl_commodity.run("my.yaml", data=df)                     # a Spark DataFrame as the data set
    print(summary.final["val_accuracy"])

The config is read and validated once, its data prepared (bad input ends here, before any cluster starts),
then the run goes to its engine: in this process for ``mode: single``; otherwise with a SparkContext on a
driver JVM of its own (or the caller's ``spark``), on an embedded cluster started and stopped around the run
when ``cluster.master`` is ``embedded``. A failure raises :class:`~ddl_commodity.errors.RunFailed` whose
``failures`` name the nodes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddl_commodity.config import RunConfig, config_to_dict, merge
from ddl_commodity.errors import RunFailed, UserInputError
from ddl_commodity.experiments.api import Experiment
from ddl_commodity.resources.cgroups import NodeGroup
from ddl_commodity.runs import create_run_dir, fail_unless_final, set_status, write_yaml_atomic
from ddl_commodity.summary import RunSummary

ConfigSource = str | Path | Mapping[str, Any]


@dataclass(frozen=True)
class DriverPlacement:
    """Where a run's driver belongs on a standing cluster.

    Args:
        host: the address the executors reach the driver at (``spark.driver.host``).
        group: the control group of the node the driver runs on (its CPU and memory count there).
    """

    host: str | None = None
    group: NodeGroup | None = None


def run(config: ConfigSource | None = None, *, master: str | None = None, run_id: str | None = None,
        resume: str | Path | None = None, spark: Any = None, progress: bool | None = None,
        spark_submit: bool = False, overrides: Mapping[str, Any] | None = None, env: str | Path | None = None,
        driver: DriverPlacement | None = None, data: Any = None, stage: str | Path | None = None) -> RunSummary:
    """Run an experiment and return its summary (also in ``<run dir>/summary.json``).

    Args:
        config: a YAML file, or the config itself as a mapping (what the YAML would hold).
        master: the Spark master to run on (``spark://host:7077``) instead of the config's ``cluster.master``;
            ``embedded`` starts a local cluster around the run. Not with ``data`` (its session's master).
        run_id: the run directory's name under ``output.runs_dir`` (default: time, name and a random tag).
        resume: a failed data-parallel run's directory, continued from its last PS checkpoint (with no
            ``config``: the run's own is used).
        spark: a ``SparkSession`` or ``SparkContext`` of yours to run on; it stays up afterwards. Make it with
            :func:`spark_conf` so the run's Spark settings are in it.
        progress: live progress bars (``None``: only when stdout is a terminal).
        spark_submit: start the driver under ``spark-submit`` in a child process instead of in this one.
        overrides: nested keys merged over the config before it is validated.
        driver: where the driver belongs on a standing cluster (``ddl cluster submit``).
        data: a Spark DataFrame with the experiment's columns (a stored ``row`` index, or rows numbered by
            ``zipWithIndex``), the run's data set: its session's executors write it as Parquet to ``stage`` and
            the run, on that session (make it from :func:`spark_conf`), reads it there; the driver never a row.
        stage: where, a new directory or URI every node reads (default: the run directory's ``source/``).
        env: an archive from ``ddl pack`` the executors run their Python from (with ``spark``: see spark_conf).

    Returns:
        The run's :class:`~ddl_commodity.summary.RunSummary`.

    Raises:
        UserInputError: a bad config or data set (nothing is started; exit code 2 on the command line).
        RunFailed: the run failed; ``failures`` lists :class:`~ddl_commodity.errors.NodeFailure` s.
    """
    from ddl_commodity.launch.logs import native_noise_dropped

    run_dir = Path(resume) if resume is not None else None
    check_env(env, spark)
    with native_noise_dropped():  # a user model's split is checked by building it: TensorFlow's start-up lines
        experiment, cfg = resolve(config, run_dir, master, overrides)
        spark = _frame_session(experiment, cfg, data, spark, spark_submit, master)
        cfg = _checked_data(experiment, cfg, data is None, progress)
    run_dir = _open_run_dir(cfg, run_dir, run_id, experiment)
    with _final_status(run_dir):
        if data is not None:
            cfg = _staged(experiment, cfg, data, str(stage or run_dir / "source"), run_dir, progress)
        if cfg.training.engine == "single":
            doc = _single(experiment, cfg, run_dir, progress)
        elif spark_submit:
            _submitted(cfg, run_dir, resume is not None, progress, driver, env)
            return RunSummary.read(run_dir)
        else:
            doc = _distributed(experiment, cfg, run_dir, resume is not None, progress, spark, driver, env)
    return RunSummary.from_dict(doc, run_dir)


@contextlib.contextmanager
def _final_status(run_dir: Path):
    """However the block ends, the run's status says how, the whole error kept (the console shows one line):
    what the engine recorded, else the error here (a cluster that did not start, a failed staging), or that it
    was interrupted."""
    try:
        yield
    except RunFailed as err:
        err.run_dir = run_dir
        fail_unless_final(run_dir, f"RunFailed: {err}")
        raise
    except KeyboardInterrupt as err:
        fail_unless_final(run_dir, f"interrupted ({str(err) or 'SIGINT'})", overwrite_failed=True)
        raise
    except BaseException as err:
        fail_unless_final(run_dir, f"{type(err).__name__}: {err}")
        raise


def _single(experiment: Experiment, cfg: RunConfig, run_dir: Path, progress: bool | None) -> dict:
    """The run in this process, without Spark (``mode: single``)."""
    from ddl_commodity.engines.run import run_experiment
    from ddl_commodity.launch.logs import run_logged_to

    with run_logged_to(run_dir / "job.log"):  # TensorFlow's native start-up lines, warnings
        return run_experiment(experiment, cfg, run_dir, progress=progress)


def resolve(config: ConfigSource | None, resume: Path | None = None, master: str | None = None,
            overrides: Mapping[str, Any] | None = None) -> tuple[Experiment, RunConfig]:
    """The experiment and its validated config: from ``config``, or a resumed run's own."""
    from ddl_commodity.experiments.registry import experiment_and_config, load

    if (config is None) == (resume is None):
        raise UserInputError("give either a config or a run directory to resume")
    if resume is not None and not (resume / "config.yaml").is_file():
        raise UserInputError(f"--resume {resume}: not a run directory (no config.yaml)")
    source = resume / "config.yaml" if resume is not None else config
    extra = merge(dict(overrides or {}), {"cluster": {"master": master}} if master else {})
    if isinstance(source, Mapping):
        return experiment_and_config(merge(dict(source), extra), "<config>")
    return load(source, extra)


def _checked_data(experiment: Experiment, cfg: RunConfig, check: bool, progress: bool | None) -> RunConfig:
    """``cfg`` reading its data file as Parquet if ``data.as_parquet`` says so; with ``check``, the data set
    checked (data errors end here, before any cluster starts)."""
    if cfg.data.as_parquet and cfg.data.source is None:
        from ddl_commodity.launch.sources import as_parquet

        cfg = as_parquet(experiment, cfg, progress)
    if check and cfg.data.cache != "none" and cfg.data.source is None:
        raise UserInputError("data.cache: Spark persists a feed read from Parquet (data.source, data.as_parquet "
                             "or a DataFrame); rows the driver loads are cached in memory anyway")
    if check:
        experiment.dataset(cfg, progress=progress)
    return cfg


def _staged(experiment: Experiment, cfg: RunConfig, data: Any, stage: str, run_dir: Path,
            progress: bool | None) -> RunConfig:
    """``cfg`` reading the DataFrame ``data``, written as Parquet at ``stage`` by its session's executors."""
    from ddl_commodity.launch.sources import stage_frame, with_source

    print(f"writing the DataFrame as Parquet on its executors: {stage}", flush=True)
    try:
        cfg = with_source(experiment, cfg, stage_frame(data, *experiment.columns(cfg), stage))
        experiment.dataset(cfg, progress=progress)
    except UserInputError as err:
        set_status(run_dir, "failed", error=str(err))
        raise
    return cfg


def _frame_session(experiment: Experiment, cfg: RunConfig, data: Any, spark: Any, spark_submit: bool,
                   master: str | None) -> Any:
    """The SparkContext a run of ``data`` (a DataFrame) runs on: its own session's, after its schema is checked
    against the experiment's columns; ``spark`` unchanged without ``data``."""
    if data is None:
        return spark
    if master is not None:
        raise UserInputError("master: a run of a DataFrame runs on the DataFrame's own session, on its master; "
                             "leave master out")
    from ddl_commodity.launch.sources import frame_columns, with_source

    if cfg.training.engine == "single" or spark_submit:
        raise UserInputError("data: a DataFrame is read by a distributed run on its own session (data or model "
                             "parallel, in this process), not a single-machine or spark-submit one")
    if cfg.data.source is not None or cfg.data.as_parquet:
        raise UserInputError("data: a DataFrame is the run's data set; the config names one too (data.source "
                             "or data.as_parquet): give one of them")
    with_source(experiment, cfg, "<DataFrame>")  # what cannot work with a Parquet source ends here
    own = data.sparkSession.sparkContext
    if spark is not None and getattr(spark, "sparkContext", spark) is not own:
        raise UserInputError("spark: a run of a DataFrame runs on the DataFrame's own session; pass that one "
                             "or none")
    frame_columns(data, *experiment.columns(cfg))
    return own


def spark_conf(config: ConfigSource, env: str | Path | None = None) -> Any:
    """The ``SparkConf`` a run of ``config`` needs (one core per executor, worker reuse, timeouts...): make
    your own SparkContext from it (``.setMaster(url)``) to pass as ``run(..., spark=sc)``. With ``env`` (an
    archive from ``ddl pack``) it ships that environment; start the context with ``PYSPARK_PYTHON`` set to
    ``./environment/bin/python``, the executors' interpreter."""
    from ddl_commodity.launch.pack import executor_settings
    from ddl_commodity.runtime.spark import tfos_spark_conf

    conf = tfos_spark_conf(resolve(config)[1])
    return conf.setAll(list(executor_settings(env).items())) if env is not None else conf


def check_env(env: str | Path | None, spark: Any) -> None:
    """A shipped environment's archive exists; it cannot be added to a context that is already running."""
    from ddl_commodity.launch.pack import archive_uri

    if env is None:
        return
    if spark is not None:
        raise UserInputError("env= is shipped when the run starts its SparkContext; for your own, make it from "
                             "spark_conf(config, env=...)")
    archive_uri(env)


def _open_run_dir(cfg: RunConfig, resume: Path | None, run_id: str | None, experiment: Experiment) -> Path:
    if resume is None:
        run_dir = create_run_dir(cfg.output.runs_dir, cfg.name, run_id)
        print(f"run {run_dir}: {experiment.describe(cfg)}", flush=True)
        return run_dir
    from ddl_commodity.engines.data_parallel import resume_point

    if (resume / "summary.json").exists():
        raise UserInputError(f"{resume}: this run already finished; nothing to resume")
    resumed = resume_point(cfg, resume)
    print(f"resuming {resume} from PS version {resumed['from_version']} (feed epoch "
          f"{resumed['first_epoch'] + 1} of {cfg.training.epochs})", flush=True)
    return resume


def _distributed(experiment: Experiment, cfg: RunConfig, run_dir: Path, resume: bool, progress: bool | None,
                 spark: Any, driver: DriverPlacement | None, env: str | Path | None = None) -> dict:
    """The run with its driver in this process, on the caller's SparkContext or a driver JVM of its own."""
    from ddl_commodity.engines.run import run_experiment
    from ddl_commodity.launch.driver import DriverJvm
    from ddl_commodity.launch.embedded import driver_target
    from ddl_commodity.launch.logs import run_logged_to
    from ddl_commodity.runtime.session import ProcessContext

    driver = driver or DriverPlacement()
    with contextlib.ExitStack() as stack:
        state = None
        if spark is not None:
            source = ProcessContext(getattr(spark, "sparkContext", spark))
        else:
            master, group, state = driver_target(stack, cfg, run_dir, driver.group)
            source = DriverJvm(master, cfg.cluster.driver_memory, run_dir / "driver.log", driver.host, group)
            if env is not None:
                from ddl_commodity.launch.pack import ShippedEnvironment

                source = ShippedEnvironment(source, env)
        try:
            with run_logged_to(run_dir / "job.log"):
                return run_experiment(experiment, cfg, run_dir, progress=progress, resume=resume, spark=source)
        except RunFailed as err:
            _raise_with_memory_kills(err, state)


def _raise_with_memory_kills(err: RunFailed, state: Any) -> None:
    """Re-raise ``err`` naming every node whose memory cap the kernel enforced (read while the cluster is up)."""
    from ddl_commodity.launch.embedded import out_of_memory_failures

    killed = out_of_memory_failures(state)
    if not killed:
        raise err
    raise RunFailed(str(err), [*err.failures, *killed]) from None


def _submitted(cfg: RunConfig, run_dir: Path, resume: bool, progress: bool | None,
               driver: DriverPlacement | None, env: str | Path | None = None) -> None:
    """The run under spark-submit: the validated config goes to the job as the run's ``config.yaml``."""
    from ddl_commodity.launch.embedded import driver_target
    from ddl_commodity.launch.submit import submit

    config_file = run_dir / "config.yaml"
    if not resume:
        write_yaml_atomic(config_file, config_to_dict(cfg))
    with contextlib.ExitStack() as stack:
        master, group, state = driver_target(stack, cfg, run_dir, (driver or DriverPlacement()).group)
        try:
            submit(master, cfg.cluster.driver_memory, config_file, run_dir, resume, progress, group, env)
        except RunFailed as err:
            _raise_with_memory_kills(err, state)
