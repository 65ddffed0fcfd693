"""The class-data archive Spark's JVMs start from (``cluster/jvm.py``): real Java, real Spark jars."""

from __future__ import annotations

import subprocess

import pytest

from ddl_commodity.cluster.jvm import class_data_archive, java_binary, jvm_options, spark_class_path, spark_home

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
