"""Shared fixtures. TensorFlow and Spark are real everywhere; nothing here mocks them."""

from __future__ import annotations

import contextlib
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


CPU_GROUPS = pytest.StashKey[dict]()


def _cgroup2_mount() -> Path | None:
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


def pytest_configure(config) -> None:
    """With ``DDL_TEST_CPU=FILE`` (root, a cgroup v2 mount; a hybrid host's ``unified`` one will do), every test
    runs in a control group of its own: the test's process and everything it starts (clusters, JVMs, TF
    nodes; module fixtures count for the module's first test) until the next test. At the end of the session
    each test's CPU-seconds are appended to FILE as JSON lines. The suite is CPU-bound: this says where."""
    if not os.environ.get("DDL_TEST_CPU"):
        return
    mount = _cgroup2_mount()
    if mount is None or not os.access(mount, os.W_OK):
        raise pytest.UsageError("DDL_TEST_CPU needs a writable cgroup v2 mount (root); found none")
    for stale in mount.glob("ddl-test-cpu-*"):  # an earlier session's, where a process outlived it
        if not Path(f"/proc/{stale.name.rsplit('-', 1)[1]}").exists():
            for group in [*stale.glob("*/"), stale]:
                with contextlib.suppress(OSError):
                    group.rmdir()
    root = mount / f"ddl-test-cpu-{os.getpid()}"
    root.mkdir(exist_ok=True)
    home = next(line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()
                if line.startswith("0::"))
    config.stash[CPU_GROUPS] = {"root": root, "home": mount / home.lstrip("/"), "tests": {}}


def pytest_runtest_setup(item) -> None:
    groups = item.config.stash.get(CPU_GROUPS, None)
    if groups is not None:
        group = groups["root"] / str(len(groups["tests"]))
        group.mkdir()
        (group / "cgroup.procs").write_text(str(os.getpid()))
        groups["tests"][item.nodeid] = group


def pytest_sessionfinish(session) -> None:
    groups = session.config.stash.get(CPU_GROUPS, None)
    if groups is None:
        return
    (groups["home"] / "cgroup.procs").write_text(str(os.getpid()))
    with open(os.environ["DDL_TEST_CPU"], "a") as f:
        for test, group in groups["tests"].items():
            stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
            f.write(json.dumps({"test": test, "cpu_seconds": int(stat["usage_usec"]) / 1e6}) + "\n")
            with contextlib.suppress(OSError):  # a process that outlived the session keeps its group
                group.rmdir()
    with contextlib.suppress(OSError):
        groups["root"].rmdir()


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
