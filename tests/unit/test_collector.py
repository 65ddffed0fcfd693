"""The driver-side collector over real gRPC on loopback: records land in files, failures and auth."""

from __future__ import annotations

import json

import grpc
import pytest

from ddl_commodity.runtime.collector import CollectorClient, RunCollector


def test_records_failures_and_abort(tmp_path) -> None:
    seen = []
    with RunCollector(tmp_path, "s3cret", on_record=lambda s, r: seen.append((s, r))) as coll:
        client = CollectorClient(coll.address, "s3cret", "worker-0")
        assert client.record("workers/worker-0", {"epoch": 1, "loss": 2.5}) is False
        assert client.record("ps", {"tau": 0}) is False
        assert client.heartbeat() is False
        client.fail("worker-0 raised ValueError:\nTraceback ...")
        assert coll.failure.is_set() and coll.first_failure.node == "worker-0"
        assert "Traceback" in coll.first_failure.detail and coll.first_failure.cause == "raised"
        assert client.heartbeat() is True  # nodes learn that the run is over
        assert (tmp_path / "ps.jsonl.partial").is_file() and not (tmp_path / "ps.jsonl").exists()
        client.close()
    assert not list(tmp_path.rglob("*.partial"))
    lines = (tmp_path / "workers" / "worker-0.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"epoch": 1, "loss": 2.5}]
    assert json.loads((tmp_path / "ps.jsonl").read_text()) == {"tau": 0}
    assert seen[0] == ("workers/worker-0", {"epoch": 1, "loss": 2.5})


def test_wrong_secret_and_bad_stream_are_refused(tmp_path) -> None:
    with RunCollector(tmp_path, "right") as coll:
        intruder = CollectorClient(coll.address, "wrong", "worker-9", timeout_s=5)
        with pytest.raises(grpc.RpcError) as err:
            intruder.record("ps", {"x": 1})
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError):
            intruder.fail("not really")
        assert not coll.failure.is_set()
        client = CollectorClient(coll.address, "right", "worker-0", timeout_s=5)
        with pytest.raises(grpc.RpcError) as err:
            client.record("../../etc/passwd", {"x": 1})
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not (tmp_path / "ps.jsonl").exists()
    assert not any(tmp_path.parent.glob("etc"))


def test_silent_nodes_are_reported_until_they_say_goodbye(tmp_path) -> None:
    import time

    with RunCollector(tmp_path, "s") as coll:
        a, b = CollectorClient(coll.address, "s", "worker-0"), CollectorClient(coll.address, "s", "worker-1")
        a.heartbeat()
        b.heartbeat()
        b.heartbeat(done=True)
        time.sleep(0.3)
        assert [n for n, _ in coll.silent_nodes(0.2)] == ["worker-0"]
        a.heartbeat()
        assert coll.silent_nodes(0.2) == []


def test_abort_waits_only_until_every_live_node_heard_it(tmp_path) -> None:
    import threading
    import time

    with RunCollector(tmp_path, "s") as coll:
        live, gone = CollectorClient(coll.address, "s", "worker-0"), CollectorClient(coll.address, "s", "worker-1")
        gone.heartbeat()
        time.sleep(0.5)  # worker-1 went silent before the abort: not waited for
        live.heartbeat()
        coll.abort()
        assert coll.wait_heard(0.3) == ["worker-0"]  # it has not heartbeated since
        threading.Timer(0.2, live.heartbeat).start()
        assert coll.wait_heard(0.45) == []  # worker-0 heartbeats at 0.2 s (the timer above)


def test_trained_by_names_the_worker_whose_record_covers_a_feed_partition(tmp_path) -> None:
    """What a worker asks before training a feed partition that Spark may be re-running."""
    with RunCollector(tmp_path, "s") as coll:
        coll.preload("workers/worker-0", [{"feed_epoch": 0, "shard": 0}])  # a resumed run's kept records
        client = CollectorClient(coll.address, "s", "worker-0", timeout_s=5)
        client.record("workers/worker-1", {"epoch": 1, "feed_epoch": 0, "shard": 1})
        client.record("ps", {"feed_epoch": 1, "shard": 0})  # not a worker's epoch
        assert client.trained_by(0, 1) == "worker-1" and client.trained_by(0, 0) == "worker-0"
        assert client.trained_by(1, 0) is None and client.trained_by(1, 1) is None
        intruder = CollectorClient(coll.address, "wrong", "worker-9", timeout_s=5)
        with pytest.raises(grpc.RpcError):
            intruder.trained_by(0, 1)
        client.close()
        intruder.close()


def test_a_capped_node_is_allowed_silence_in_proportion_to_its_share(tmp_path) -> None:
    """The watchdog offers a silent node as lost after ``heartbeat_timeout_s``, a node capped at a share c of
    a core after ``heartbeat_timeout_s / c`` (its heartbeat thread gets its turns c times as often), a node
    still in its set-up after ``SET_UP_SILENCE_FACTOR`` times the window."""
    import time

    from ddl_commodity.runtime.failfast import Watchdog

    offered: dict[str, float] = {}
    with RunCollector(tmp_path, "s3cret") as coll:
        names = ("worker-0", "worker-1", "worker-2")
        clients = {name: CollectorClient(coll.address, "s3cret", name) for name in names}
        clients["worker-0"].record("tasks", {"task": "worker-0", "cpu_share": 0.25})
        clients["worker-1"].record("tasks", {"task": "worker-1", "cpu_share": None})
        clients["worker-2"].record("tasks", {"task": "worker-2", "cpu_share": None})
        for name, client in clients.items():
            client.heartbeat(set_up=name != "worker-2")  # then silence
        silent_from = time.monotonic()
        # on_silent returning True: the loss is survivable, so the watchdog needs no Spark context to cancel
        dog = Watchdog(None, coll, {}, heartbeat_timeout_s=0.5,
                       on_silent=lambda node, age: offered.setdefault(node, time.monotonic() - silent_from) > 0)
        dog.start()
        deadline = time.monotonic() + 10
        while len(offered) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        dog.stop()
        for client in clients.values():
            client.close()
    assert 0.5 < offered["worker-1"] < 1.5, offered
    assert offered["worker-0"] > 2.0, offered  # 0.5 / 0.25
    assert offered["worker-2"] > 1.5, offered  # 0.5 * 3


def test_heartbeats_wait_on_no_record_and_their_gaps_are_published(tmp_path) -> None:
    """A heartbeat is taken while a record's write is stuck (a busy disk must not make a live node look
    silent); at stop, ``heartbeats.json`` gives each node's heartbeat count, longest gap and slowest call."""
    import threading
    import time

    with RunCollector(tmp_path, "s") as coll:
        client = CollectorClient(coll.address, "s", "worker-0", timeout_s=5)
        client.heartbeat()
        time.sleep(0.4)
        with coll._lock:  # what a record's file write holds while the disk is slow
            stuck = threading.Thread(target=client.record, args=("ps", {"tau": 0}))
            stuck.start()
            start = time.monotonic()
            assert client.heartbeat() is False
            took = time.monotonic() - start
            assert coll.silent_nodes(1.0) == []
        stuck.join(5)
        client.close()
    assert took < 2.0, took  # not the client's 5 s timeout
    doc = json.loads((tmp_path / "heartbeats.json").read_text())
    stats = doc["nodes"]["worker-0"]
    assert stats["heartbeats"] == 2 and stats["failed_calls"] == 0
    assert 0.4 <= stats["longest_gap_s"] < 2.0 and stats["longest_gap_ended"] > 0
    assert 0 < stats["slowest_call_s"] < 2.0  # the first call's time, sent with the second
    assert json.loads((tmp_path / "ps.jsonl").read_text()) == {"tau": 0}


def test_a_lost_executor_whose_process_here_went_quiet_says_what_the_process_does(tmp_path, monkeypatch) -> None:
    """A frozen node's Spark worker can miss the master's timeout before its TF process misses ours: the
    lost executor's message then says the process is hung (here: a real child process, stopped)."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    from ddl_commodity.errors import NodeFailure
    from ddl_commodity.runtime import failfast
    from ddl_commodity.runtime.failfast import Watchdog

    monkeypatch.setattr(failfast, "SUSPECT_SILENCE_S", 0.5)  # not three missed 2 s heartbeats: a test's time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with RunCollector(tmp_path, "s") as coll:
            client = CollectorClient(coll.address, "s", "ps-0")
            task = {"task": "ps-0", "node": "node2", "executor": "1", "pid": child.pid,
                    "host": socket.gethostname()}
            client.record("tasks", task)
            client.heartbeat()
            dog = Watchdog(None, coll, {}, heartbeat_timeout_s=60)
            assert dog._diagnose([], [task]) == NodeFailure(
                "ps-0", "lost", "node ps-0 was lost: its Spark executor 1 on node2 is gone")
            os.kill(child.pid, signal.SIGSTOP)
            time.sleep(failfast.SUSPECT_SILENCE_S + 0.2)
            assert dog._diagnose([], [task]).detail == (
                "node ps-0 was lost: its Spark executor 1 on node2 is gone; "
                "its process is hung (stopped or frozen, not running)")
            client.close()
    finally:
        child.kill()
        child.wait()
