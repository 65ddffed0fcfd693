"""CPU wait per node, defined once: 0-100 % of a node's time in which a thread of it was ready to run and waited
for a CPU, comparable with the CPU wait (Ganglia's ``cpu_wio``) the thesis read off its one-core PCs.

A node of a cluster profile stands for one of the thesis's PCs slowed by the time dilation d: it gets d of a
core (its CPU share s), and one wall second here is d seconds of that PC
(:mod:`ddl_commodity.resources.profiles`). Over one sample interval of ``dt`` wall seconds the sampler reads

* ``W``: the run-queue delay of the node's threads, summed (``/proc/<pid>/task/<tid>/schedstat``): the time
  they were runnable but not on a CPU, queued behind other work or held back because the node's share was
  spent (CFS throttling);
* ``C``: the CPU seconds the node used.

Each CPU second used at share d costs a runnable thread (1 - d) / d seconds of throttling: that is how the
share stretches a second of the PC to 1/d wall seconds, not time a thread of the PC waited. What is left,
``W - C (1 - d) / d``, is the thread-seconds the PC's threads would have waited for its CPU; per second of the
PC's time (d x dt):

    cpu_wait = 100 x clip((W - C (1 - d) / d) / dt, 0, 1),   d = min(1, s); d = 1 without a share

So an idle node reads 0; one always-runnable thread under any share reads 0 (its PC is busy, nothing waits:
100 % CPU, as a lone CPU-bound process on a PC); two always-runnable threads read 100 (on a one-core PC one of
them always waits), and so does one thread that never gets the CPU. The unclipped value is the mean number of
waiting threads, an upper bound of the share of time in which one waited (equal when no two wait at once);
clipped at 1 nothing reads above 100. Below 0 it is the emulation's doing: a node that wakes with quota left
runs on a whole host core until its quota is spent, faster than its PC would. A share above one core is taken
as that many undilated cores (d = 1), as is a node without a share. The kernel adds a wait to a thread's delay
when the wait ends, so one sample misses the waits in progress at its end and counts them in the next: on a
loaded machine a 1 s sample can be off by tens of percent either way; a run's mean is not.

Kept beside it: ``run_queue_delay_percent`` = 100 W / dt (the number earlier reports called CPU wait: it
grows with the node's thread count and includes the share's throttling, 60 % for one busy thread at 0.4) and
``throttled_percent`` = 100 x the group's ``cpu.stat`` throttled time / dt.
"""

from __future__ import annotations

#: One line for tables and status output.
LEGEND = ("CPU wait: % of the node's time (as the PC it stands for, slowed to its share d of a core) in which a "
          "thread of it was ready to run and waited for a CPU, 0-100; the throttling that stretches the PC's "
          "second to 1/d wall seconds is not waiting")

#: Node-average keys of the CPU wait defined here, and of the old measure beside it.
WAIT_KEYS = ("cpu_wait_percent_mean", "cpu_wait_percent_max", "run_queue_delay_percent_mean",
             "throttled_percent_mean")


def dilation(share: float | None) -> float:
    """The time dilation a node's CPU share stands for.

    Args:
        share: the node's CPU share in cores (``cpu.cfs_quota_us / cpu.cfs_period_us``), None without one.

    Returns:
        d in (0, 1]: the share itself up to one core (a one-core PC at d), else 1.
    """
    if not share or share <= 0:
        return 1.0
    return min(1.0, share)


def cpu_wait_percent(waited_s: float, cpu_s: float, interval_s: float, share: float | None) -> float:
    """CPU wait of one node over one interval (module docstring), in % of the node's PC time, 0-100.

    Args:
        waited_s: run-queue delay of the node's threads in the interval, summed, seconds.
        cpu_s: CPU seconds the node used in the interval.
        interval_s: the interval's wall seconds (any unit works if all three share it).
        share: the node's CPU share in cores, None without one.

    Returns:
        The percentage, clipped to [0, 100]; 0 for an empty interval.
    """
    if interval_s <= 0:
        return 0.0
    d = dilation(share)
    waiting = (waited_s - cpu_s * (1.0 - d) / d) / interval_s
    return 100.0 * min(1.0, max(0.0, waiting))


def upgrade_row(row: dict) -> dict:
    """A sampler row with this module's keys.

    Rows sampled before CPU wait was defined here hold the run-queue delay under ``cpu_wait_percent``: it moves
    to ``run_queue_delay_percent`` and CPU wait is recomputed from it, the row's CPU % and share (rates over the
    same interval, so % of wall time stands for seconds per 100 s). A row without a recorded share cannot be
    recomputed: its CPU wait is None.

    Args:
        row: one sampler row (``Sample`` fields), new or old.

    Returns:
        ``row`` itself when it is new, else an upgraded copy.
    """
    if row.get("run_queue_delay_percent") is not None:
        return row
    out = dict(row)
    delay = out.pop("cpu_wait_percent", None)
    out["run_queue_delay_percent"] = delay
    out["cpu_wait_percent"] = None
    if delay is not None and "cpu_share" in row and row.get("cpu_percent") is not None:
        share = row["cpu_share"]
        cpu = row["cpu_percent"] * (share or 1.0)  # % of one core: cpu_percent is of the share
        out["cpu_wait_percent"] = round(cpu_wait_percent(delay, cpu, 100.0, share), 2)
    return out


def wait_columns(averages: dict) -> tuple[float | None, float | None, float | None]:
    """CPU wait figures of one node's whole-run averages, old summaries included.

    Summaries written before CPU wait was defined here have no ``run_queue_delay_percent_mean``; their
    ``cpu_wait_percent_mean`` is the run-queue delay summed over threads (module docstring), not CPU wait.

    Args:
        averages: one node's entry of a summary's ``node_averages``.

    Returns:
        (CPU wait % mean, CPU wait % max, run-queue delay % mean); the CPU wait ones None for an old summary
        or a node whose samples could not give it.
    """
    if averages.get("run_queue_delay_percent_mean") is None:
        return None, None, averages.get("cpu_wait_percent_mean")
    return (averages.get("cpu_wait_percent_mean"), averages.get("cpu_wait_percent_max"),
            averages.get("run_queue_delay_percent_mean"))
