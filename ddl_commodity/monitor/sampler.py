"""Per-node resource sampler: what the thesis read from Ganglia, one row per node every second.

A row holds the node's CPU use (% of one core, and cumulative CPU seconds of the node's process and its
children), its CPU wait, the machine's iowait %, the node's resident memory and its cumulative network bytes
in and out. Network bytes come from the best source available, recorded in every row as ``net_method``:

* ``netns-interface``: the node lives in its own network namespace (``ddl cluster up --netns``), so the
  counters of its interfaces (``/proc/net/dev`` seen from inside, loopback excluded) are exactly its traffic;
* ``container-interface``: the node is a container (the compose cluster): the counters of the interfaces
  the container sees, loopback excluded, as for a namespace node;
* ``process-tcp``: otherwise, the sum of ``bytes_received`` / ``bytes_acked`` over the TCP sockets the
  node's processes own (their ``/proc/<pid>/fd`` inodes), read from the kernel as ``ss -tie`` reads them
  (:mod:`ddl_commodity.monitor.tcp`), less the connections between two of the node's own processes (its
  loopback traffic, which a PC's interface does not carry). Sockets that closed between two samples keep
  their last counts, so totals never go backwards.

CPU and memory come from the node's control group when the node has one (``ddl cluster up`` with node
limits or a profile, or the node's container; :mod:`ddl_commodity.resources.cgroups`), so they cover every
process of the node (its Spark executor JVM too): ``cpu_percent`` is then a % of the node's own CPU share
(100 = the node used all it may), ``memory_bytes`` / ``memory_limit`` the group's usage against its cap.
Without a group they cover this process and its children, and ``cpu_percent`` is a % of one core.

``cpu_wait_percent`` is the per-node analogue of the "CPU wio" Ganglia showed the thesis, 0-100: the share
of the node's time (as the PC it stands for) in which a thread of it waited for a CPU, from the run-queue
delay of its threads (``/proc/<pid>/task/*/schedstat``) less the throttling its CPU share imposes to slow it
down to its PC (:mod:`ddl_commodity.monitor.cpu_wait` defines it). Beside it: ``run_queue_delay_percent``,
that delay summed over the node's threads as a % of wall time (it grows with their number), and
``throttled_percent``, the group's ``cpu.stat`` throttled time as a % of wall time (summed over host CPUs).
``iowait_percent`` is Linux's machine-wide iowait, kept for comparison: the same on every node of a
one-machine cluster.

Where a node's CPU and memory go: ``cpu_seconds_by_part`` (cumulative, from every thread's ``schedstat``)
and ``pss_bytes_by_part`` (proportional set size, so that the processes Spark forks do not count their shared
pages twice) split them among the node's TF process (for CPU: its Python main thread (the training
loop's client side, or the PS task), its gRPC threads (the TF server's transport) and its other threads
(TensorFlow's op threads, and the feed reader, heartbeats and sampler)) and, where the node has a group,
its Spark executor JVM and Spark's Python workers (feed tasks, TFoS's queue manager). Threads and processes
that end keep what they used.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from ddl_commodity.monitor.cpu_wait import cpu_wait_percent
from ddl_commodity.monitor.tcp import proc_entries, tcp_bytes_by_socket
from ddl_commodity.resources.cgroups import container_group, in_container, own_node_group

FIELDS = ("time", "node", "cpu_percent", "cpu_seconds", "iowait_percent", "rss_bytes", "net_rx_bytes",
          "net_tx_bytes", "net_method", "cpu_share", "cpu_wait_percent", "run_queue_delay_percent",
          "throttled_percent", "memory_bytes", "memory_limit")

# A rate over less than a few CFS periods is not a rate of the share: a window of a few ms can catch a whole
# period's quota spent on both cores, several times the share (the sample taken at stop comes a few ms after
# the last). Rates are taken against the newest earlier sample at least this old.
MIN_RATE_WINDOW_S = 0.25


@dataclass
class Sample:
    time: float
    node: str
    cpu_percent: float
    cpu_seconds: float
    iowait_percent: float
    rss_bytes: int
    net_rx_bytes: int
    net_tx_bytes: int
    net_method: str
    cpu_share: float | None = None
    cpu_wait_percent: float = 0.0
    run_queue_delay_percent: float = 0.0
    throttled_percent: float = 0.0
    memory_bytes: int | None = None
    memory_limit: int | None = None
    cpu_seconds_by_part: dict[str, float] | None = None
    pss_bytes_by_part: dict[str, int] | None = None


def in_own_network_namespace() -> bool:
    """True when this process's network namespace is not the init process's (a ``--netns`` node)."""
    try:
        return os.readlink("/proc/self/ns/net") != os.readlink("/proc/1/ns/net")
    except OSError:
        return False


def interface_counters(proc_net_dev: Path = Path("/proc/net/dev")) -> tuple[int, int]:
    """(rx, tx) bytes summed over the interfaces this process sees, loopback excluded."""
    rx = tx = 0
    for line in proc_net_dev.read_text().splitlines()[2:]:
        name, _, data = line.partition(":")
        if name.strip() == "lo":
            continue
        cols = data.split()
        rx += int(cols[0])
        tx += int(cols[8])
    return rx, tx


class _TcpTotals:
    """Cumulative per-process TCP bytes that leave the node and survive sockets closing between samples. A
    socket once seen with its other end in the node stays left out (its peer may close first); what it was
    counted before that is kept, so totals never go backwards."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[int, int]] = {}
        self._closed = [0, 0]
        self._internal: set[int] = set()

    def update(self, pids: set[int]) -> tuple[int, int]:
        now, internal = tcp_bytes_by_socket(pids)
        self._internal |= internal
        now = {k: v for k, v in now.items() if k not in self._internal}
        for key, (rx, tx) in self._last.items():
            if key not in now:
                self._closed[0] += rx
                self._closed[1] += tx
        self._last = now
        return (self._closed[0] + sum(v[0] for v in now.values()),
                self._closed[1] + sum(v[1] for v in now.values()))


#: A Spark executor JVM's main class: the root of the processes a node without a group runs.
SPARK_EXECUTOR = "CoarseGrainedExecutorBackend"

#: The parts ``cpu_seconds_by_part`` and ``pss_bytes_by_part`` name (see the module docstring).
PARTS = ("TF main thread", "TF gRPC threads", "TF other threads", "Spark JVM", "Spark Python workers")
_GRPC_THREADS = ("grpc", "event_engine", "lifeguard")
PSS_EVERY_S = 5.0


def _comm(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _schedstat(pid: int, tid: str) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds waiting on a run queue) of one thread, or None if it is gone."""
    try:
        fd = os.open(f"/proc/{pid}/task/{tid}/schedstat", os.O_RDONLY)
        try:
            on_cpu, waited = os.read(fd, 128).split()[:2]
        finally:
            os.close(fd)
        return int(on_cpu) / 1e9, int(waited) / 1e9
    except (OSError, ValueError):
        return None


class _ThreadTotals:
    """Cumulative run-queue delay and CPU seconds per part of a changing set of threads, from one read of
    every thread's ``schedstat`` per sample; threads that exit keep what they used and waited. A thread's
    wait counts from the first sample it is in (or from its start, if it starts later); its CPU from its
    start."""

    def __init__(self, node_pid: int) -> None:
        self._node_pid = node_pid
        self._last: dict[int, tuple[str, float, float]] = {}
        self._cpu = dict.fromkeys(PARTS, 0.0)
        self._waited = 0.0
        self._started = False

    def part(self, pid: int, tid: int | None = None) -> str:
        if pid != self._node_pid:
            return "Spark JVM" if _comm(f"/proc/{pid}/comm") == "java" else "Spark Python workers"
        if tid is None or tid == pid:
            return "TF main thread"
        thread = _comm(f"/proc/{pid}/task/{tid}/comm")
        return "TF gRPC threads" if thread.startswith(_GRPC_THREADS) else "TF other threads"

    def update(self, pids: Iterable[int]) -> tuple[float, dict[str, float]]:
        """(seconds waited in all, {part: CPU seconds}) up to now."""
        now: dict[int, tuple[str, float, float]] = {}
        for pid, name in proc_entries(pids, "task"):
            stat = _schedstat(pid, name)
            if stat is None:
                continue
            tid, (used, waited) = int(name), stat
            part, used_before, waited_before = self._last.get(tid) or (
                self.part(pid, tid), 0.0, 0.0 if self._started else waited)
            self._cpu[part] += used - used_before
            self._waited += max(0.0, waited - waited_before)
            now[tid] = (part, used, waited)
        self._last, self._started = now, True
        return self._waited, {k: round(v, 3) for k, v in self._cpu.items() if v > 0}


class NodeSampler:
    """Samples this node (this process and its children) every ``interval_s`` on a daemon thread.

    ``emit(rows)`` receives batches of rows (dicts); it is called about every ``flush_every`` samples and
    once more at :meth:`stop`.
    """

    def __init__(self, node: str, emit: Callable[[list[dict]], None], interval_s: float = 1.0,
                 flush_every: int = 5) -> None:
        self.node = node
        self.interval_s = interval_s
        self._emit = emit
        self._flush_every = flush_every
        self._proc = psutil.Process()
        self._netns = in_own_network_namespace() or in_container()
        self._tcp = _TcpTotals()
        self._rows: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"ddl-sampler-{node}", daemon=True)
        self._earlier: list[tuple[float, tuple[float, float, float]]] = []  # the last two samples' counters
        self._group = own_node_group() or container_group()
        self._executor: psutil.Process | bool | None = None  # the Spark executor JVM above this process, once found
        self._threads = _ThreadTotals(self._proc.pid)
        self._pss: tuple[float, dict[str, int]] | None = None
        self._last_sys = psutil.cpu_times()
        self.method = ("container-interface" if in_container() else "netns-interface") if self._netns \
            else "process-tcp"

    def _processes(self) -> list[psutil.Process]:
        try:
            return [self._proc, *self._proc.children(recursive=True)]
        except psutil.Error:
            return [self._proc]

    def _node_counters(self, procs: list[psutil.Process], waited: float) -> tuple[float, tuple[float, float, float],
                                                                                  float | None, dict]:
        """(time, (cpu, waited, throttled seconds), share, memory fields): the node's group's, else the
        processes'. The time is taken next to the CPU counter: a throttled sampler may be held up between."""
        group = self._group
        if group is not None:
            with contextlib.suppress(OSError, ValueError):
                use = group.usage()
                counters = (use.cpu_seconds, waited, use.throttled_seconds)
                return use.time, counters, group.cpus(), {"memory_bytes": use.memory_bytes,
                                                          "memory_limit": use.memory_limit}
        cpu = 0.0
        now = time.time()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                cpu += t.user + t.system
        return now, (cpu, waited, 0.0), None, {}

    def _node_pids(self, procs: list[psutil.Process]) -> list[int]:
        """Every process of the node: its group's where it has one, else this process and its children."""
        if self._group is not None:
            with contextlib.suppress(OSError):
                return self._group.pids() or [p.pid for p in procs]
        return [p.pid for p in procs]

    def _executor_pids(self, procs: list[psutil.Process]) -> set[int]:
        """Without a group, the node's processes for its traffic: the Spark executor's process tree it runs in
        (the executor JVM, Spark's Python workers, the TF process), else this process and its children. The TF
        process inherits its Python worker's connection to the JVM: both its ends are the node's."""
        try:
            if self._executor is None:
                self._executor = next((p for p in self._proc.parents() if p.name() == "java"
                                       and any(SPARK_EXECUTOR in a for a in p.cmdline())), False)
            if self._executor:  # listed at every sample: Spark forks a Python worker for a task (about 1 ms)
                return {self._executor.pid, *(p.pid for p in self._executor.children(recursive=True))}
        except psutil.Error:
            pass
        return {p.pid for p in procs}

    def _pss_by_part(self, pids: list[int]) -> dict[str, int]:
        """Proportional set size of the node's TF process, Spark JVM and Spark Python workers: pages shared
        by forked processes (Spark's Python daemon and its workers) split among them, so the parts add up.
        Read every ``PSS_EVERY_S`` (the kernel walks a process's pages: 9.5 ms for a 700 MB TF process)."""
        if self._pss is not None and time.monotonic() - self._pss[0] < PSS_EVERY_S:
            return self._pss[1]
        out: dict[str, int] = {}
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                part = "TF process" if pid == self._proc.pid else self._threads.part(pid)
                out[part] = out.get(part, 0) + psutil.Process(pid).memory_full_info().pss
        self._pss = (time.monotonic(), out)
        return out

    def sample(self) -> Sample:
        procs = self._processes()
        rss = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                rss += p.memory_info().rss
        pids = self._node_pids(procs)
        waited, by_part = self._threads.update(pids)
        now, counters, share, memory = self._node_counters(procs, waited)
        percent = wait = delay = throttled = 0.0
        if self._earlier:
            then, before = next((e for e in reversed(self._earlier) if now - e[0] >= MIN_RATE_WINDOW_S),
                                self._earlier[0])
            if now > then:
                used, waited_d, throttled_d = (a - b for a, b in zip(counters, before, strict=True))
                percent, delay, throttled = (100.0 * v / (now - then) for v in (used, waited_d, throttled_d))
                percent /= share or 1.0
                wait = cpu_wait_percent(waited_d, used, now - then, share)
        self._earlier = [*self._earlier[-1:], (now, counters)]
        cpu = counters[0]
        sys_now = psutil.cpu_times()
        total = sum(sys_now) - sum(self._last_sys)
        iowait = 100.0 * (getattr(sys_now, "iowait", 0.0) - getattr(self._last_sys, "iowait", 0.0)) / total \
            if total > 0 else 0.0
        self._last_sys = sys_now
        if self._netns:
            rx, tx = interface_counters()
        else:
            rx, tx = self._tcp.update(set(pids) if self._group is not None else self._executor_pids(procs))
        return Sample(now, self.node, round(max(percent, 0.0), 2), round(cpu, 3), round(max(iowait, 0.0), 2),
                      int(rss), rx, tx, self.method, share, cpu_wait_percent=round(wait, 2),
                      run_queue_delay_percent=round(max(delay, 0.0), 2),
                      throttled_percent=round(max(throttled, 0.0), 2), **memory, cpu_seconds_by_part=by_part,
                      pss_bytes_by_part=self._pss_by_part(pids))

    def start(self) -> NodeSampler:
        self._rows.append(asdict(self.sample()))
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._rows.append(asdict(self.sample()))
            if len(self._rows) >= self._flush_every:
                self._flush()

    def _flush(self) -> None:
        rows, self._rows = self._rows, []
        if rows:
            # the driver may be gone at the very end; samples are best effort
            with contextlib.suppress(Exception):
                self._emit(rows)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5 + self.interval_s)
        self._rows.append(asdict(self.sample()))
        self._flush()


def write_node_csvs(records: list[dict], out_dir: Path) -> list[Path]:
    """``nodes/<node>.csv`` per node from sampler rows (any order), each written atomically."""
    import csv
    import io

    from ddl_commodity.runs import write_bytes_atomic

    by_node: dict[str, list[dict]] = {}
    for r in records:
        by_node.setdefault(r["node"], []).append(r)
    paths = []
    for node, rows in sorted(by_node.items()):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(sorted(rows, key=lambda r: r["time"]))
        paths.append(write_bytes_atomic(Path(out_dir) / f"{node}.csv", buf.getvalue().encode()))
    return paths


_TEXT_FIELDS = ("node", "net_method")


def read_node_csvs(nodes_dir: Path) -> dict[str, list[dict]]:
    """Sampler rows per node from the ``<node>.csv`` files :func:`write_node_csvs` wrote.

    Args:
        nodes_dir: a run's ``nodes`` directory.

    Returns:
        ``{node: rows in time order}``, numbers parsed, empty cells None; empty when there are no CSVs.
    """
    import csv

    def cell(key: str, text: str | None) -> object:
        if key in _TEXT_FIELDS or text is None:
            return text
        if text == "":
            return None
        for kind in (int, float):
            with contextlib.suppress(ValueError):
                return kind(text)
        return text

    out: dict[str, list[dict]] = {}
    for path in sorted(Path(nodes_dir).glob("*.csv")):
        with path.open(newline="") as f:
            rows = [{k: cell(k, v) for k, v in r.items()} for r in csv.DictReader(f)]
        if rows:
            out[path.stem] = sorted(rows, key=lambda r: r["time"])
    return out


def counters_at(rows: list[dict], t: float, key: str) -> float:
    """A cumulative counter of one node at time ``t``, linearly interpolated between its samples."""
    rows = sorted(rows, key=lambda r: r["time"])
    if not rows:
        return 0.0
    if t <= rows[0]["time"]:
        return float(rows[0][key])
    for a, b in itertools.pairwise(rows):
        if a["time"] <= t <= b["time"]:
            f = (t - a["time"]) / (b["time"] - a["time"]) if b["time"] > a["time"] else 1.0
            return a[key] + f * (b[key] - a[key])
    return float(rows[-1][key])
