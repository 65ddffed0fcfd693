"""What the console says when a run fails: one line per failure, the right cause for a silent node."""

from __future__ import annotations

import signal
import subprocess
import time

import psutil

from ddl_commodity.errors import short_error
from ddl_commodity.runtime.failfast import process_state

NODE_TRACEBACK = """RunFailed: distributed run failed: node worker-1 on vm (pid 13796) raised RuntimeError:
Traceback (most recent call last):
  File "/x/node.py", line 130, in guard
    yield
  File "/x/data_parallel_node.py", line 238, in inject_fault
    raise RuntimeError(f"fault injection: worker {worker} fails at epoch {epoch}")
RuntimeError: fault injection: worker 1 fails at epoch 2
"""


def test_a_node_traceback_becomes_one_sentence() -> None:
    assert short_error(NODE_TRACEBACK) == ("distributed run failed: node worker-1 on vm (pid 13796) raised "
                                           "RuntimeError: fault injection: worker 1 fails at epoch 2")


def test_a_traceback_of_another_kind_keeps_its_last_line() -> None:
    text = "job failed:\nTraceback (most recent call last):\n  File \"a.py\", line 1\nValueError: bad shape\n"
    assert short_error(text) == "job failed: ValueError: bad shape"


def test_a_message_without_traceback_is_joined_on_one_line() -> None:
    assert short_error("RunFailed: node ps-0 stopped responding\n  on node2") == "node ps-0 stopped responding on node2"


def test_a_silent_process_is_told_dead_hung_or_running() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 5  # while it execs, it may be in disk sleep for a moment
        while psutil.Process(proc.pid).status() != psutil.STATUS_SLEEPING and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_state(proc.pid).startswith("its process is alive but silent")
        proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not process_state(proc.pid).startswith("its process is hung") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_state(proc.pid).startswith("its process is hung")
    finally:
        proc.kill()
        proc.wait()
    assert process_state(proc.pid).startswith("its process is gone")


def test_the_exception_line_of_a_multi_line_message() -> None:
    from ddl_commodity.runtime.failfast import exception_line

    tb = ("Traceback (most recent call last):\n  File \"util.py\", line 94, in read_executor_id\n"
          "    raise Exception(msg)\nException: No executor_id file found on this node, please ensure that:\n"
          "1. Spark num_executors matches TensorFlow cluster_size\n4. There are no other root-cause exceptions")
    assert exception_line(tb) == "Exception: No executor_id file found on this node, please ensure that:"
    assert exception_line("RuntimeError: boom") == "RuntimeError: boom"


def test_a_lost_executor_is_named_by_its_node_with_sparks_reason() -> None:
    from ddl_commodity.runtime.failfast import lost_executor_message

    spark = ("Job aborted due to stage failure: Task 1 in stage 3.0 failed 1 times, most recent failure: Lost task "
             "1.0 in stage 3.0 (TID 8) (127.0.0.1 executor 2): ExecutorLostFailure (executor 2 exited caused by one "
             "of the running tasks) Reason: Command exited with code 137\n\tat org.apache.spark...")
    task = {"task": "worker-0", "node": "node2", "executor": "2", "pid": 1}
    assert lost_executor_message(task, spark) == (
        "node worker-0 was lost: its Spark executor 2 on node2 exited (Command exited with code 137: killed by "
        "SIGKILL, or by the kernel's OOM killer)")
    # Its feed task re-run on the replacement executor says only "no executor_id file": no reason to give.
    other = {"task": "worker-1", "node": None, "executor": "12"}
    assert lost_executor_message(other, spark) == "node worker-1 was lost: its Spark executor 12 is gone"
