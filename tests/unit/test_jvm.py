"""The class-data archive Spark's JVMs start from (``runtime/jvm.py``): real Java, real Spark jars."""

from __future__ import annotations

import subprocess

import pytest

from ddl_commodity.runtime.jvm import (
    class_data_archive,
    daemon_command,
    daemon_environment,
    java_binary,
    jvm_options,
    spark_class_path,
    spark_home,
)

pytestmark = pytest.mark.skipif(java_binary() is None, reason="no Java runtime")


def test_spark_classes_load_from_the_archive() -> None:
    """With the options every Spark JVM of ours gets, Spark's own classes come pre-parsed out of the archive
    (``-Xshare:on`` makes a JVM that cannot map it fail instead of silently starting without)."""
    archive = class_data_archive()
    assert archive is not None and archive.stat().st_size > 10 * 2**20
    assert f"-XX:SharedArchiveFile={archive}" in jvm_options()
    done = subprocess.run([java_binary(), *jvm_options().split(), "-Xshare:on", "-Xlog:class+load=info",
                           "-cp", spark_class_path(spark_home()), "org.apache.spark.deploy.SparkSubmit", "--version"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    loaded = [line for line in done.stdout.splitlines() if "org.apache.spark.deploy.SparkSubmit " in line]
    assert loaded and all("source: shared objects file" in line for line in loaded), loaded


@pytest.mark.parametrize(("daemon", "options"), [("master.Master", "SPARK_MASTER_OPTS"),
                                                 ("worker.Worker", "SPARK_WORKER_OPTS")])
def test_a_daemon_starts_with_the_command_spark_class_would_run(daemon: str, options: str) -> None:
    """What Spark's launcher prints for spark-class (its own JVM, which ``daemon_command`` spares every daemon)
    is the command built here, from the same environment."""
    args = [f"org.apache.spark.deploy.{daemon}", "--host", "127.0.0.1", "--port", "7077"]
    env = daemon_environment({"SPARK_HOME": str(spark_home()), "PATH": "/usr/bin:/bin",
                              "SPARK_DAEMON_JAVA_OPTS": "-XX:+UseSerialGC -Dx='a b'", options: "-Dy=1"})
    launcher = [java_binary(), "-Xmx128m", "-cp", f"{spark_home() / 'jars'}/*", "org.apache.spark.launcher.Main"]
    done = subprocess.run([*launcher, *args], env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    printed = [part.decode() for part in done.stdout.split(b"\0") if part]
    assert printed[1:] == daemon_command(args, env)[1:]  # [0]: the same java, reached by PATH or JAVA_HOME
