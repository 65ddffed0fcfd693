"""The live bar within a distributed run's epochs: workers' heartbeats -> the driver's collector -> a bar on a
terminal (a real pseudo-terminal here), and nothing at all where the console is not a terminal."""

from __future__ import annotations

import fcntl
import io
import os
import struct
import termios
import time

from ddl_commodity.engines.progress import EpochBar
from ddl_commodity.runtime.collector import CollectorClient, RunCollector


def test_heartbeat_progress_draws_a_bar_on_a_terminal(tmp_path) -> None:
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    console = os.fdopen(follower, "w")
    with RunCollector(tmp_path, "s") as coll:
        workers = [CollectorClient(coll.address, "s", f"worker-{i}", timeout_s=5) for i in range(2)]
        with EpochBar(coll, samples_per_epoch=1000, epochs=3, stream=console) as bar:
            assert bar.enabled
            workers[0].heartbeat(progress={"epoch": 2, "samples": 300})
            workers[1].heartbeat(progress={"epoch": 2, "samples": 200})
            CollectorClient(coll.address, "s", "ps-0", timeout_s=5).heartbeat(progress={"epoch": 9, "samples": 7})
            time.sleep(3 * EpochBar.REFRESH_S)
        for w in workers:
            w.close()
    console.flush()
    os.set_blocking(leader, False)
    drawn = os.read(leader, 65536).decode(errors="replace")
    console.close()
    os.close(leader)
    assert "epoch 2/3" in drawn and "500/1000" in drawn, drawn  # the PS's report is not a worker's


def test_no_bar_where_the_console_is_not_a_terminal(tmp_path) -> None:
    console = io.StringIO()
    with RunCollector(tmp_path, "s") as coll, EpochBar(coll, 100, 1, stream=console) as bar:
        CollectorClient(coll.address, "s", "worker-0", timeout_s=5).heartbeat(progress={"epoch": 1, "samples": 50})
        time.sleep(2 * EpochBar.REFRESH_S)
    assert not bar.enabled and console.getvalue() == ""


def test_epoch_lines_count_feed_epochs_and_name_a_lost_workers_shard(capsys) -> None:
    """A survivor of a tolerated worker loss trains the lost worker's shard of a feed epoch too: its line
    repeats that feed epoch and says why, rather than counting an epoch past the run's last ("epoch 6/5")."""
    from ddl_commodity.engines.data_parallel import _EpochPrinter

    printer = _EpochPrinter(epochs=3, validation=("val_accuracy", ""))
    base = {"worker": "worker-0", "loss": 0.5, "accuracy": 0.8, "seconds": 1.0, "ps_version": 4}
    for own_count, feed_epoch in ((1, 0), (2, 1), (3, 1), (4, 2)):  # feed epoch 1: its own and worker-1's shard
        printer("workers/worker-0", {**base, "epoch": own_count, "feed_epoch": feed_epoch})
    printer("ps", {"applied_version": 5})  # not a worker's epoch: no line
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in lines] == [
        "worker-0 epoch 1/3", "worker-0 epoch 2/3", "worker-0 epoch 2/3", "worker-0 epoch 3/3"]
    assert [line.endswith("a lost worker's shard)") for line in lines] == [False, False, True, False]
