"""Spark settings every TFoS job of this toolkit runs with, and why."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ddl_commodity.runtime.jvm import SMALL_JVM_OPTIONS, jvm_options

if TYPE_CHECKING:
    from pyspark import SparkConf

    from ddl_commodity.config import ExperimentConfig


def tfos_spark_conf(cfg: ExperimentConfig) -> SparkConf:
    """A ``SparkConf`` for a TFoS run of ``cfg.tf_nodes`` nodes (1 PS + M workers), one core each.

    The master URL is left to ``spark-submit --master``.
    """
    from pyspark import SparkConf

    conf = SparkConf().setAppName(f"ddl-{cfg.name}")
    settings = {
        # TFoS Spark-input mode runs TF in a background process of the Python worker and feeds it through
        # a queue in that worker: the worker must be reused by later tasks.
        "spark.python.worker.reuse": "true",
        # One TF node per executor, one executor per core: each feed task then lands on a different node.
        "spark.executor.cores": "1",
        "spark.task.cpus": "1",
        "spark.cores.max": str(cfg.tf_nodes),
        "spark.executor.memory": cfg.cluster.executor_memory,
        "spark.dynamicAllocation.enabled": "false",
        # A retried feed task finds the failed worker's error already taken off TFoS's error queue and
        # waits for the whole feed timeout: that is TFoS's infamous hang. Fail on the first error instead.
        "spark.task.maxFailures": "1",
        # Feed partitions have no useful locality; waiting for it only delays them.
        "spark.locality.wait": "0s",
        # A hung (frozen) or cut-off node still accepts TCP connections but never answers: its executor is
        # given up after 30 s of silence, checked every 5 s (Spark: 120 s, checked every 60), and a block
        # fetch from it fails after 30 s, retried once (Spark: 120 s x 4): with Spark's, a tolerated frozen
        # worker would stall a surviving one for minutes, fetching a cached chunk the frozen node holds.
        "spark.network.timeout": "30s",
        "spark.network.timeoutInterval": "5s",
        "spark.shuffle.io.maxRetries": "1",
        "spark.shuffle.io.retryWait": "1s",
        "spark.executor.extraJavaOptions": _executor_java_options(cfg),
        "spark.ui.showConsoleProgress": "false",
        "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL": "2",
        "spark.executorEnv.PYTHONUNBUFFERED": "1",
        # pyspark's daemon with an import hook: TensorFlow's import on the nodes skips matplotlib (0.45 CPU-s
        # per node; ddl_commodity/runtime/pyspark_daemon.py).
        "spark.python.daemon.module": "ddl_commodity.runtime.pyspark_daemon",
    }
    for key, value in settings.items():
        conf.setIfMissing(key, value)
    if cfg.cluster.master == "embedded":
        conf.setIfMissing("spark.driver.host", cfg.cluster.host)
        conf.setIfMissing("spark.driver.bindAddress", cfg.cluster.host)
    return conf


def _executor_java_options(cfg: ExperimentConfig) -> str:
    """Executors of the embedded cluster run on this machine and map its class-data archive (``cluster.jvm``);
    remote ones cannot. Under spark-submit ``pyspark`` is imported from a zip: Spark's home is ``SPARK_HOME``."""
    if cfg.cluster.master != "embedded":
        return SMALL_JVM_OPTIONS
    home = os.environ.get("SPARK_HOME")
    return jvm_options(build=False, home=Path(home) if home else None)
