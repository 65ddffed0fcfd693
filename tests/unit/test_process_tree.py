"""The check that a command starts no ``ddl`` subprocess sees one where there is one."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.process_tree import ddl_processes, run_watched


def test_ddl_processes_are_told_from_the_rest() -> None:
    assert ddl_processes([["/usr/bin/python", "-m", "ddl_commodity.cli", "run", "x.yaml"],
                          ["/venv/bin/ddl", "run", "x.yaml"],
                          ["java", "-cp", "spark.jar", "org.apache.spark.deploy.SparkSubmit", "pyspark-shell"],
                          ["/usr/bin/python", "-m", "pyspark.daemon"]]) == [
        ["/usr/bin/python", "-m", "ddl_commodity.cli", "run", "x.yaml"], ["/venv/bin/ddl", "run", "x.yaml"]]


def test_a_started_child_is_seen(tmp_path: Path) -> None:
    code = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; time.sleep(1)'])"
    proc, seen = run_watched([sys.executable, "-c", code], cwd=tmp_path, timeout=60)
    assert proc.returncode == 0
    assert [sys.executable, "-c", "import time; time.sleep(1)"] in seen


def test_a_forked_copy_of_the_command_is_not_taken_for_a_second_one(tmp_path: Path) -> None:
    """Between fork and exec a child shows its parent's command line; only what it execs counts."""
    code = ("import os, time\n"
            "for _ in range(6):\n"
            "    pid = os.fork()\n"
            "    if pid == 0:\n"
            "        time.sleep(0.5); os._exit(0)\n"
            "    os.waitpid(pid, 0)\n")
    proc, seen = run_watched([sys.executable, "-c", code], cwd=tmp_path, timeout=60)
    assert proc.returncode == 0 and seen == [], seen
