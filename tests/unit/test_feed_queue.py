"""The Spark-input feed on a real TFoS manager (the node's queue process): a partition is put on the queue a
bounded number of items ahead of the node, not all at once, and the feed ends once the node took them all."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ddl_commodity.cluster import feed


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
