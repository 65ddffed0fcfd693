"""TFoS Spark-input feeding without TensorFlow in the feeding Python workers.

TFoS's ``TFSparkNode.train`` and ``TFSparkNode.shutdown`` do what a feed needs: put a partition's items on
the queue of the TF node of this executor (its ``TFManager``) and wait until the node has consumed them; put
``None`` to end the feed. But importing ``TFSparkNode`` imports TensorFlow (through ``TFNode`` ->
``compat``): 3.7 CPU-s in every Python worker Spark starts for a feed task, and a tiny run starts four of them
(a sixth of its CPU time). These functions do the same with TFoS's ``TFManager`` and ``util`` modules only,
and see a node's queue drained at once where TFoS sleeps 1 s, which every feed job would wait for.

Both are partition functions for ``RDD.foreachPartition``, built on the driver and pickled to the executors.
:class:`Prefetched` is the other end, in the TF node: it reads the feed ahead of training.

An item's arrays can travel through shared memory (:class:`SharedItems`): the feeder writes them to a file
under ``/dev/shm`` and puts only the file's name on the queue. Through the queue itself, a bundle is pickled
by the feeder, unpickled and kept by the node's manager process, pickled again and unpickled by the node:
four copies and two socket transfers, on the same CPU share as the node's training.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: How often a waiting feed task asks the node's manager (a round trip to another process of the node, paid
#: from the node's CPU share) whether its queue has room or the node failed: the queue then holds half its
#: items or more, seconds of training, so nothing is gained by asking 20 times a second.
MANAGER_POLL_S = 0.5
#: Bytes of a partition's items on a node's queue, about (1.5x at most; at least 4 items; the node's reader
#: holds two more, :class:`Prefetched`): 16 land-cover bundles of 50x4 patches, 4,000 one-spectrum records.
MAX_QUEUED_BYTES = 64 * 2**20
#: Items with fewer bytes of arrays than this go through the queue itself (a one-spectrum record is 7 KB: a
#: file per record would cost more than the copies it saves).
SHARED_MIN_BYTES = 64 * 2**10
#: The first element of the queue item that stands for an item in a shared-memory file.
_SHARED_TAG = "ddl-commodity:shared-item"
#: Every array in an item's file starts at a multiple of this many bytes.
_ALIGN = 64
#: Where a run's feed files go, on every machine (Linux's shared memory file system; elsewhere the queue
#: carries the items).
SHARED_MEMORY = Path("/dev/shm")


def _manager(cluster_info: list[dict]):
    """This executor's TF node manager (TFoS's ``_get_manager``, minus the TensorFlow import)."""
    from tensorflowonspark import TFManager, util

    host, executor = util.get_ip_address(), util.read_executor_id()
    for node in cluster_info:
        if node["host"] == host and node["executor_id"] == executor:
            return TFManager.connect(node["addr"], node["authkey"])
    raise RuntimeError(f"no TFoS node runs on {host} as executor {executor}: one task per executor, and as many "
                       "executors as TF nodes, are required")


def feed_partition(cluster_info: list[dict], feed_timeout_s: float, qname: str = "input",
                   shared_root: str | None = None) -> Callable[[Iterable], list[bool]]:
    """Put every item of the partition on this executor's TF node queue and return once the node took them all.

    A node that reports an error (TFoS's ``error`` queue) fails the task with that error; a node that takes
    longer than ``feed_timeout_s`` fails it with a timeout. A node already terminating skips the partition.
    With ``shared_root`` (a directory in shared memory, the same path on every machine), large items go
    through files there (:class:`SharedItems`); the node must read the feed with :class:`Prefetched`.
    """

    def _feed(items: Iterable) -> list[bool]:
        mgr = _manager(cluster_info)
        if str(mgr.get("state")) == "'terminating'":
            sum(1 for _ in items)
            return [True]
        shared = SharedItems.open(shared_root)
        try:
            with _removed_if_signalled(shared):
                return _put_all(mgr, qname, items, shared, feed_timeout_s)
        finally:
            if shared is not None:
                shared.remove()  # after a normal end, every file was read; after a failure, none will be

    return _feed


@contextlib.contextmanager
def _removed_if_signalled(shared: SharedItems | None) -> Iterator[None]:
    """While a partition is fed, SIGHUP and SIGTERM remove the task's files, then end the process as they
    would have. A cluster's teardown removes the files of the processes it killed, but PySpark's daemon can
    fork a worker for a task that arrives during the teardown; that worker dies of the daemon's SIGHUP and
    is in no list of pids, so only the worker itself can remove its files."""
    signals = (signal.SIGHUP, signal.SIGTERM)
    if shared is None or threading.current_thread() is not threading.main_thread() or any(
            signal.getsignal(s) is not signal.SIG_DFL for s in signals):  # someone else's handlers: theirs
        yield
        return

    def remove_then_die(signum: int, _frame: object) -> None:
        shared.remove()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for s in signals:
        signal.signal(s, remove_then_die)
    try:
        yield
    finally:
        for s in signals:  # the Python worker is reused for later tasks
            signal.signal(s, signal.SIG_DFL)


def _put_all(mgr, qname: str, items: Iterable, shared: SharedItems | None, feed_timeout_s: float) -> list[bool]:
    """:func:`feed_partition`'s work: put the items a bounded number ahead of the node, wait until it took all."""
    queue, errors = mgr.get_queue(qname), mgr.get_queue("error")
    limit, unchecked = 0, 0
    for item in items:
        # TFoS's queue is unbounded: a partition put on it at once would sit whole in the node's manager
        # process or shared memory (an 8K-patch shard is 270 MB, beside the feeder's own copies, on a 2 GB
        # node). Its length is a round trip to that process: asked every limit/2 items, not for every
        # one-sample record.
        limit = limit or max(4, MAX_QUEUED_BYTES // _nbytes(item))
        if unchecked >= limit // 2:
            deadline = time.monotonic() + feed_timeout_s
            while queue.qsize() >= limit:  # the queue holds limit/2 items or more: no hurry
                _check(errors, deadline, feed_timeout_s)
                time.sleep(MANAGER_POLL_S)
            unchecked = 0
        queue.put(item if shared is None else shared.wrap(item), block=True)
        unchecked += 1
    joined = threading.Thread(target=queue.join, daemon=True)
    joined.start()
    deadline = time.monotonic() + feed_timeout_s
    while joined.is_alive():
        _check(errors, deadline, feed_timeout_s)
        joined.join(MANAGER_POLL_S)  # returns as soon as the node has taken every item
    return [str(mgr.get("state")) == "'terminating'"]


def _nbytes(item: Any) -> int:
    """The bytes of the arrays in a feed item (a tuple of them, or one)."""
    parts = item if isinstance(item, tuple) else (item,)
    return sum(getattr(part, "nbytes", 0) for part in parts) or 1024


def _check(errors, deadline: float, feed_timeout_s: float) -> None:
    """Fail the feed task with the node's error, or when the node has taken longer than the timeout."""
    if not errors.empty():
        raise RuntimeError("Exception in worker:\n" + errors.get())
    if time.monotonic() > deadline:
        raise RuntimeError(f"Timeout while feeding partition: the node took more than {feed_timeout_s:.0f} s")


def end_feed(cluster_info: list[dict], queues: list[str]) -> Callable[[Iterable], list[bool]]:
    """End this executor's feed: ``None`` on every data queue, then state ``stopped`` (TFoS's shutdown task).

    An error the node reported is raised, and put back so that a retried task sees it too."""

    def _end(_: Iterable) -> list[bool]:
        mgr = _manager(cluster_info)
        for q in queues:
            if q != "error":
                mgr.get_queue(q).put(None, block=True)
        errors = mgr.get_queue("error")
        if not errors.empty():
            message = errors.get()
            errors.put(message)
            raise RuntimeError("Exception in worker:\n" + message)
        mgr.set("state", "stopped")
        return [True]

    return _end


class SharedItems:
    """A feed task's files in shared memory: one per item with :data:`SHARED_MIN_BYTES` of arrays or more.

    The task owns its directory (``<root>/<pid>-<random>``, mode 0700) and removes it when it ends, on every
    path: a node reads and deletes an item's file when it takes the item off the queue, before it marks it
    done, so a task that saw its queue joined leaves nothing behind, and a failed one removes what no node
    will read. (A feeder killed outright leaves its files: the next feed task on that machine removes them,
    :func:`remove_orphaned`, and so does the driver at the end of a run, on its own machine.) The files
    count in the memory of the feeder's cgroup, which is the node's, as the items held by the node's queue
    process would.
    """

    def __init__(self, directory: Path) -> None:
        self.directory, self._count = directory, 0

    @classmethod
    def open(cls, root: str | None) -> SharedItems | None:
        """The task's directory under ``root``; None (the queue carries items) without a root or room."""
        if root is None:
            return None
        remove_orphaned(Path(root).parent)
        directory = Path(root) / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            directory.mkdir(mode=0o700, parents=True)
        except OSError:
            return None
        return cls(directory)

    def wrap(self, item: Any) -> Any:
        """What goes on the queue for ``item``: a small descriptor of its file, or the item itself when it is
        small, holds no plain arrays, or the file system is full (a container's ``/dev/shm`` is 64 MB)."""
        parts = item if isinstance(item, tuple) else (item,)
        arrays = [p for p in parts if isinstance(p, np.ndarray)]
        if sum(a.nbytes for a in arrays) < SHARED_MIN_BYTES or any(a.dtype.hasobject for a in arrays):
            return item
        path = self.directory / str(self._count)
        self._count += 1
        try:
            with open(path, "wb") as out:
                for a in arrays:
                    out.write(np.ascontiguousarray(a).data)
                    out.write(bytes(-a.nbytes % _ALIGN))
        except OSError:
            path.unlink(missing_ok=True)
            return item
        layout = tuple((p.dtype.str, p.shape) if isinstance(p, np.ndarray) else (None, p) for p in parts)
        return (_SHARED_TAG, str(path), type(item) if isinstance(item, tuple) else None, layout)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


#: A feed task's directory untouched for this long, whose process is gone, is an orphan. Not at once: where
#: containers share ``/dev/shm`` but not their process ids (``docker run --ipc=host``), another container's
#: live feeder looks gone, but its node keeps reading and deleting its files.
ORPHAN_IDLE_S = 600.0


def remove_orphaned(parent: Path = SHARED_MEMORY, idle_s: float = ORPHAN_IDLE_S) -> list[Path]:
    """Remove every feed task's directory (``ddl-feed-*/<pid>-*`` under ``parent``) whose feeder process is
    gone and which nobody changed for ``idle_s``: a feeder killed outright (SIGKILL, the OOM killer, a run
    killed with its driver) cannot remove its files, which would otherwise hold the machine's memory until it
    restarts. Returns what was removed."""
    now = time.time()
    return _remove_tasks(parent, lambda pid, task: not _alive(pid) and now - task.stat().st_mtime > idle_s)


def remove_files_of(pids: set[int], parent: Path = SHARED_MEMORY) -> list[Path]:
    """Remove the feed tasks' directories of the processes ``pids`` (a cluster's, just killed by its teardown:
    their files are garbage at once, with no wait), then every run's directory left empty (a feed task that
    starts meanwhile makes its run's again). Returns the feed tasks' directories removed."""
    removed = _remove_tasks(parent, lambda pid, _: pid in pids)
    for run in parent.glob("ddl-feed-*"):
        with contextlib.suppress(OSError):  # not empty: a live run's
            run.rmdir()
    return removed


def _remove_tasks(parent: Path, doomed: Callable[[int, Path], bool]) -> list[Path]:
    removed = []
    for task in parent.glob("ddl-feed-*/*"):
        pid = task.name.split("-", 1)[0]
        with contextlib.suppress(OSError):  # gone meanwhile: its feeder or another cleaner removed it
            if pid.isdigit() and doomed(int(pid), task):
                shutil.rmtree(task, ignore_errors=True)
                removed.append(task)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def unwrap(item: Any) -> Any:
    """The item a :meth:`SharedItems.wrap` descriptor stands for, read from its file, which is then deleted;
    any other item as it is. Arrays are writable views of one buffer: one copy from the file, no more."""
    if type(item) is not tuple or len(item) != 4 or item[0] != _SHARED_TAG:
        return item
    _, path, kind, layout = item
    with open(path, "rb") as source:
        buffer = bytearray(os.fstat(source.fileno()).st_size)
        source.readinto(buffer)
    os.unlink(path)
    parts, at = [], 0
    for dtype, spec in layout:
        if dtype is None:
            parts.append(spec)
            continue
        array = np.frombuffer(buffer, dtype, count=int(np.prod(spec)), offset=at).reshape(spec)
        parts.append(array)
        at += array.nbytes + (-array.nbytes % _ALIGN)
    if kind is None:
        return parts[0]
    return kind(*parts) if hasattr(kind, "_fields") else kind(parts)  # a named tuple (a Bundle), or a tuple


class Prefetched:
    """The items of a TF node's Spark-input feed (a TFoS ``DataFeed``), taken off its queue by a thread.

    Taking an item is a round trip to the node's queue manager and an unpickle (about 18 ms for a 1.8 MB
    bundle): the thread does it while the caller trains on the item before, holding up to ``depth``.
    An item counts as consumed (``task_done``, which ends its feed task's wait once a partition's items all
    are) when the caller says so with :meth:`consumed`, or else asks for the next one; not when it is taken, as
    in TFoS's ``next_batch``: a node lost while it trains on a partition's last items leaves that feed task
    running, for Spark to re-run. A worker calls :meth:`consumed` after training on an epoch's last item
    and before its epoch-end push: where every epoch is a feed job of its own (a run that tolerates worker
    loss), with s < M that push waits for pushes of the next feed epoch, whose Spark job starts only when this
    one's tasks have ended (a 3-worker run with s = 2 would hang until the push timeout). Ends with the
    feed (TFoS's ``None``); an exception of the thread is raised in the caller.
    """

    def __init__(self, feed, depth: int = 2) -> None:
        self._feed, self._source, self._owed = feed, feed.queue_in, False
        self._ready: queue.Queue = queue.Queue(maxsize=depth)
        self._end = object()
        threading.Thread(target=self._take, name="feed-prefetch", daemon=True).start()

    def _take(self) -> None:
        from tensorflowonspark import marker

        try:
            while (item := self._source.get(block=True)) is not None:
                if type(item) is marker.EndPartition:  # TFoS's own feeder's separator: nothing to train
                    self._source.task_done()
                    continue
                self._ready.put(unwrap(item))
        except BaseException as err:  # handed to the caller, who raises it
            self._ready.put(err)
        self._ready.put(self._end)

    def __iter__(self) -> Iterator[Any]:
        while (item := self._ready.get()) is not self._end:
            if isinstance(item, BaseException):
                raise item
            self._owed = True
            yield item
            self.consumed()
        self._source.task_done()  # the None
        self._feed.done_feeding = True

    def consumed(self) -> None:
        """The item last yielded is done with: its feed task may end (once it is the partition's last)."""
        if self._owed:
            self._owed = False
            self._source.task_done()
