"""The Spark-input feed on a real TFoS manager (the node's queue process): a partition is put on the queue a
bounded number of items ahead of the node, not all at once, and the feed ends once the node took them all;
large items travel through shared-memory files that nothing leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from ddl_commodity.data.rdd import Bundle
from ddl_commodity.runtime import feed


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A TFoS node manager with ``input`` and ``error`` queues, and the cluster_info naming it as this executor."""
    from tensorflowonspark import TFManager, util

    monkeypatch.chdir(tmp_path)
    util.write_executor_id(0)
    mgr = TFManager.start(b"feed-test", ["input", "error"], "local")
    mgr.set("state", "running")  # as a TFoS node sets it
    info = [{"host": util.get_ip_address(), "executor_id": 0, "addr": mgr.address, "authkey": b"feed-test"}]
    yield mgr, info
    mgr.shutdown()


def test_a_partition_is_fed_a_bounded_number_of_items_ahead(node, monkeypatch) -> None:
    mgr, info = node
    monkeypatch.setattr(feed, "MAX_QUEUED_BYTES", 8 * 4000)  # 8 items of 4,000 bytes
    items = [(np.full(1000, i, np.float32),) for i in range(40)]
    queue, longest, taken = mgr.get_queue("input"), [], []

    def slow_node() -> None:
        while len(taken) < len(items):
            longest.append(queue.qsize())
            taken.append(float(queue.get()[0][0]))
            queue.task_done()
            time.sleep(0.01)

    reader = threading.Thread(target=slow_node)
    reader.start()
    assert feed.feed_partition(info, feed_timeout_s=30)(iter(items)) == [False]
    reader.join(10)
    assert taken == list(range(40))  # every item, in order, and the feed ended only after the last
    assert 8 <= max(longest) <= 12, max(longest)  # about the limit (it is asked every limit/2 items), never all 40


def test_a_node_error_fails_the_feed_while_it_waits_for_room(node, monkeypatch) -> None:
    mgr, info = node
    monkeypatch.setattr(feed, "MAX_QUEUED_BYTES", 4 * 4000)
    mgr.get_queue("error").put("worker-1 raised ValueError")
    with pytest.raises(RuntimeError, match="worker-1 raised ValueError"):
        feed.feed_partition(info, feed_timeout_s=30)(iter([(np.zeros(1000, np.float32),)] * 20))


def _bundle(i: int) -> Bundle:
    rows = np.arange(i * 64, i * 64 + 64)
    return Bundle(0, 1, i == 2, rows, np.full((64, 300), i, np.float32), (rows % 7).astype(np.int32))


class _Feed:
    """The two things :class:`feed.Prefetched` uses of a TFoS ``DataFeed``."""

    def __init__(self, queue) -> None:
        self.queue_in, self.done_feeding = queue, False


def test_large_items_go_through_shared_memory_and_every_file_is_gone_at_the_end(node, tmp_path) -> None:
    mgr, info = node
    queue, root = mgr.get_queue("input"), tmp_path / "shm"
    small = (np.zeros(100, np.float32), np.zeros(100, np.int32))
    items = [_bundle(0), _bundle(1), small, _bundle(2)]
    seen, read = [], []

    def node_reads() -> None:
        # What the feeder put on the queue, looked at raw, put back and read as a worker reads it.
        seen.extend(queue.get() for _ in items)
        read.append([p.name for p in root.rglob("*") if p.is_file()])
        for item in seen:
            queue.put(item)
            queue.task_done()
        queue.put(None)
        read.append(list(feed.Prefetched(_Feed(queue))))

    reader = threading.Thread(target=node_reads)
    reader.start()
    hangup = signal.getsignal(signal.SIGHUP)
    assert feed.feed_partition(info, feed_timeout_s=30, shared_root=str(root))(iter(items)) == [False]
    assert signal.getsignal(signal.SIGHUP) is hangup  # the reused Python worker's handlers, as they were
    reader.join(10)
    got = read[-1]
    assert [type(s) for s in seen] == [tuple, tuple, tuple, tuple]
    assert [len(s) for s in seen] == [4, 4, 2, 4]  # descriptors (tag, path, type, layout), the small item itself
    assert sorted(read[0]) == ["0", "1", "2"]  # the three bundles' files, there until the node reads them
    assert [type(g) for g in got] == [Bundle, Bundle, tuple, Bundle]
    for want, have in zip(items, got, strict=True):
        for a, b in zip(want, have, strict=True):
            np.testing.assert_array_equal(a, b)
            assert getattr(b, "dtype", None) == getattr(a, "dtype", None)
    got[0].x[0, 0] = -1.0  # writable: a train step may scale or cast in place
    assert list(root.rglob("*")) == []  # every file read and deleted, the feed task's directory removed


def test_a_failed_feed_removes_the_files_no_node_will_read(node, monkeypatch, tmp_path) -> None:
    mgr, info = node
    monkeypatch.setattr(feed, "MAX_QUEUED_BYTES", 2 * _bundle(0).x.nbytes)
    mgr.get_queue("error").put("worker-1 raised ValueError")
    root = tmp_path / "shm"
    with pytest.raises(RuntimeError, match="worker-1 raised ValueError"):
        feed.feed_partition(info, feed_timeout_s=30, shared_root=str(root))(iter([_bundle(i) for i in range(3)] * 4))
    assert mgr.get_queue("input").qsize() >= 2  # what the feeder had put: descriptors of files now gone
    assert list(root.rglob("*")) == []


def test_a_feeder_hung_up_on_mid_feed_removes_its_files(node, tmp_path) -> None:
    """PySpark's daemon shuts its workers down with SIGHUP: one feeding then (forked for a task that arrived
    during a teardown, so in no teardown's list of pids) removes its files and still dies of the signal."""
    import sys
    import textwrap

    _, info = node
    root = tmp_path / "shm"
    code = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from ddl_commodity.runtime import feed
        from ddl_commodity.data.rdd import Bundle

        signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as PySpark's daemon sets it in its workers (nohup: ignored)

        def partition():
            rows = np.arange(64)
            yield Bundle(0, 0, False, rows, np.zeros((64, 300), np.float32), np.zeros(64, np.int32))
            yield Bundle(0, 0, True, rows, np.zeros((64, 300), np.float32), np.zeros(64, np.int32))
            assert list(feed.Path({str(root)!r}).rglob("*/0")), "the first bundle went through a file"
            os.kill(os.getpid(), signal.SIGHUP)

        feed.feed_partition({info!r}, feed_timeout_s=30, shared_root={str(root)!r})(partition())
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGHUP, done.stderr[-2000:]
    assert list(root.rglob("*")) == []


def test_items_go_through_the_queue_when_shared_memory_is_full(tmp_path) -> None:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        shared = feed.SharedItems.open(str(mount / "run"))
        first, second = shared.wrap(_bundle(0)), shared.wrap(_bundle(1))  # 77 KB each; the second does not fit
        assert first[0] != second[0] and isinstance(second, Bundle)
        assert [p.name for p in shared.directory.iterdir()] == ["0"]  # the partial file was deleted
        np.testing.assert_array_equal(feed.unwrap(first).x, _bundle(0).x)
        shared.remove()
        assert list(mount.iterdir()) == [mount / "run"]
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_files_of_a_feeder_killed_outright_are_removed_by_the_next_feed_task(tmp_path) -> None:
    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()
    orphan = tmp_path / "ddl-feed-run1" / f"{dead.pid}-0badf00d"
    live = tmp_path / "ddl-feed-run1" / f"{os.getpid()}-0c0ffee0"
    recent = tmp_path / "ddl-feed-run1" / f"{dead.pid + 1_000_000}-5ca1ab1e"  # gone, but changed a minute ago
    for task in (orphan, live, recent):
        task.mkdir(parents=True)
        (task / "0").write_bytes(b"\0" * 4096)
    hour_ago = time.time() - 3600
    for task in (orphan, live):
        os.utime(task, (hour_ago, hour_ago))
    os.utime(recent, (time.time() - 60, time.time() - 60))
    shared = feed.SharedItems.open(str(tmp_path / "ddl-feed-run2"))  # the next run's first feed task
    assert not orphan.exists()
    assert (live / "0").exists() and (recent / "0").exists() and shared.directory.is_dir()
    assert feed.remove_orphaned(tmp_path) == []


def test_a_cluster_teardown_removes_the_files_of_the_feeders_it_killed(tmp_path) -> None:
    killed, other = tmp_path / "ddl-feed-run1" / "4242-0badf00d", tmp_path / "ddl-feed-run1" / "4343-0c0ffee0"
    for task in (killed, other):
        task.mkdir(parents=True)
        (task / "0").write_bytes(b"\0" * 4096)
    (tmp_path / "ddl-feed-run2").mkdir()  # a run killed with its driver, which removes the run's directory
    assert feed.remove_files_of({4242, 17}, tmp_path) == [killed]
    assert not killed.exists() and (other / "0").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddl-feed-run1"]
