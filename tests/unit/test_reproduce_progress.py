"""`ddl reproduce`'s progress lines: time left, and the error a failed experiment keeps."""

from __future__ import annotations


def test_progress_estimates_the_time_left_from_the_runs_so_far() -> None:
    import time

    from ddl_commodity.report.reproduce import _time_left

    state = {"experiments": {"a": {"state": "succeeded", "seconds": 120.0}, "b": {"state": "failed", "seconds": 240.0}}}
    # b (failed: run again) and c are left, at the mean 180 s each.
    assert _time_left(state, ["b", "c"], time.monotonic() - 360) == " (elapsed 6 min, about 6 min left)"
    assert _time_left({"experiments": {}}, ["a"], time.monotonic()) == " (elapsed 0 min)"


def test_a_failed_experiment_keeps_the_error_line_not_the_log_pointer() -> None:
    from ddl_commodity.report.reproduce import _first_error

    stderr = "error: node worker-1 stopped responding\n(full error: runs/x/status.json; logs: runs/x/job.log)\n"
    assert _first_error(stderr) == "error: node worker-1 stopped responding"
    assert _first_error("") == "?"
