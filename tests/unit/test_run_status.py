"""A run's status.json always ends in a final state, with the whole error, and never undoes how a run ended."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ddl_commodity.runs import fail_unless_final, read_status, record_outcome, set_status


def test_a_running_run_is_marked_failed_and_a_finished_one_keeps_its_state(tmp_path: Path) -> None:
    assert read_status(tmp_path) == {}
    set_status(tmp_path, "running")
    fail_unless_final(tmp_path, "ClusterError: the master did not start")
    assert read_status(tmp_path)["error"] == "ClusterError: the master did not start"
    set_status(tmp_path, "failed", error="node worker-1 was killed", failures=[{"node": "worker-1"}])
    fail_unless_final(tmp_path, "RunFailed: node worker-1 was killed")
    assert read_status(tmp_path)["failures"] == [{"node": "worker-1"}]  # the recorded failure is kept
    fail_unless_final(tmp_path, "interrupted (SIGINT)", overwrite_failed=True)
    assert read_status(tmp_path)["error"] == "interrupted (SIGINT)"
    set_status(tmp_path, "succeeded")
    fail_unless_final(tmp_path, "interrupted (SIGTERM)", overwrite_failed=True)  # during the cluster's stop
    assert read_status(tmp_path)["state"] == "succeeded"


def test_a_failure_keeps_the_whole_story_in_the_status(tmp_path: Path) -> None:
    def failing() -> dict:
        raise RuntimeError("node worker-0 raised ValueError\nTraceback (most recent call last):\n  File x\n"
                           "ValueError: bad shape")

    with pytest.raises(RuntimeError):
        record_outcome(tmp_path, failing)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and status["error"].startswith("RuntimeError: node worker-0 raised")
    assert "Traceback" in status["error"] and not (tmp_path / "summary.json").exists()
