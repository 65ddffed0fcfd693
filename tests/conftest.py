"""Shared fixtures. TensorFlow and Spark are real everywhere; nothing here mocks them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def local_spark():
    """A real in-process SparkContext on ``local[2]`` for tests of RDD code (no TFoS)."""
    import sys

    from pyspark import SparkConf, SparkContext

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = (SparkConf().setMaster("local[2]").setAppName("ddl-tests")
            .set("spark.ui.enabled", "false").set("spark.driver.host", "127.0.0.1")
            .set("spark.driver.bindAddress", "127.0.0.1"))
    sc = SparkContext.getOrCreate(conf)
    sc.setLogLevel("ERROR")
    yield sc
    sc.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With ``DDL_TEST_TIMELINE=FILE``, append when each test ran and on which xdist worker (JSON lines): where
    the suite's wall time goes, which a per-test duration cannot show when tests run side by side."""
    path = os.environ.get("DDL_TEST_TIMELINE")
    start = time.time()
    yield
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"test": item.nodeid, "worker": os.environ.get("PYTEST_XDIST_WORKER", "-"),
                                "start": start, "end": time.time()}) + "\n")
