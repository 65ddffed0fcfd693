"""CPU wait per node, 0-100 (:mod:`ddl_commodity.monitor.cpu_wait`): the formula on counter deltas, on old
sampler rows and summaries, in the report's tables, and on a synthetic node in a real 0.4-core cgroup."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ddl_commodity.monitor.cpu_wait import cpu_wait_percent, upgrade_row, wait_columns
from ddl_commodity.monitor.metrics import node_averages, refresh_waits
from ddl_commodity.monitor.sampler import FIELDS, NodeSampler, read_node_csvs, write_node_csvs
from ddl_commodity.report.node_tables import OLD_WAIT_NOTE, averages_table
from ddl_commodity.resources import cgroups

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "reproduction" / "runs"
_REASON = cgroups.unavailable_reason()
needs_cgroups = pytest.mark.skipif(_REASON is not None, reason=f"no writable cgroups: {_REASON}")


@pytest.mark.parametrize(("waited", "cpu", "share", "want"), [
    (0.0, 0.0, 0.4, 0.0),  # idle
    (0.6, 0.4, 0.4, 0.0),  # one always-runnable thread at 0.4: its PC is busy, nothing waits
    (1.6, 0.4, 0.4, 100.0),  # two of them: on a one-core PC one always waits
    (1.0, 0.0, None, 100.0),  # one thread that never runs, on a one-core PC
    (1.0, 1.0, 1.0, 100.0),  # one thread runs, one always waits, on a one-core PC
    (0.9, 0.4, 0.4, 30.0),  # 0.3 thread-seconds beyond the share's throttling
    (0.1, 0.4, 0.4, 0.0),  # ran in bursts faster than its PC: not waiting
    (0.5, 1.5, 2.0, 50.0),  # a share over one core: undilated
])
def test_the_formula_on_counter_deltas(waited: float, cpu: float, share: float | None, want: float) -> None:
    assert cpu_wait_percent(waited, cpu, 1.0, share) == pytest.approx(want)
    assert cpu_wait_percent(2 * waited, 2 * cpu, 2.0, share) == pytest.approx(want)  # a rate: dt cancels


def test_many_threads_never_read_above_100() -> None:
    """64 always-runnable threads at 0.4: 63.6 thread-seconds waited per second, still 100 at most."""
    assert cpu_wait_percent(64 - 0.4, 0.4, 1.0, 0.4) == 100.0
    rng = random.Random(1)
    for _ in range(10_000):
        threads, share = rng.randint(1, 200), rng.choice([None, 0.1, 0.25, 0.4, 1.0, 3.0])
        cpu = rng.uniform(0, min(threads, 4.0))
        waited = rng.uniform(0, threads)
        assert 0.0 <= cpu_wait_percent(waited, cpu, rng.uniform(0.25, 2.0), share) <= 100.0
    assert cpu_wait_percent(5.0, 1.0, 0.0, 0.4) == 0.0  # an empty interval


def test_old_rows_move_the_run_queue_delay_aside_and_are_recomputed() -> None:
    """Rows sampled before held the run-queue delay under ``cpu_wait_percent``; recomputed from it, the row's
    CPU % of its share and the share (rates over the same interval)."""
    busy = upgrade_row({"cpu_percent": 100.0, "cpu_share": 0.4, "cpu_wait_percent": 60.0})
    assert busy["run_queue_delay_percent"] == 60.0 and busy["cpu_wait_percent"] == pytest.approx(0.0)
    two = upgrade_row({"cpu_percent": 100.0, "cpu_share": 0.4, "cpu_wait_percent": 160.0})
    assert two["cpu_wait_percent"] == pytest.approx(100.0)
    assert upgrade_row({"cpu_percent": 50.0, "cpu_wait_percent": 30.0})["cpu_wait_percent"] is None  # no share
    new = {"cpu_percent": 1.0, "cpu_share": 0.4, "cpu_wait_percent": 5.0, "run_queue_delay_percent": 9.0}
    assert upgrade_row(new) is new


def _rows(node: str, delays: list[float], cpu: float = 100.0, old: bool = False) -> list[dict]:
    rows = []
    for i, delay in enumerate(delays):
        row = {"time": 1000.0 + i, "node": node, "cpu_percent": cpu, "cpu_seconds": 0.4 * i, "iowait_percent": 0.0,
               "rss_bytes": 2**20, "net_rx_bytes": 0, "net_tx_bytes": 0, "net_method": "process-tcp",
               "cpu_share": 0.4, "throttled_percent": 60.0, "memory_bytes": 2**20, "memory_limit": 2**31}
        if old:
            row["cpu_wait_percent"] = delay
        else:
            row.update(cpu_wait_percent=cpu_wait_percent(delay, cpu * 0.4, 100.0, 0.4), run_queue_delay_percent=delay)
        rows.append(row)
    return rows


def _wait_cells(table: list[str]) -> list[str]:
    head = [c.strip() for c in table[0].strip("|").split("|")]
    col = head.index("CPU wait % mean / max")
    return [[c.strip() for c in line.strip("|").split("|")][col] for line in table[2:] if line.startswith("|")]


def test_no_cpu_wait_above_100_in_the_averages_or_their_table() -> None:
    """A node with the run-queue delay of 900 % (many threads) reads 100 at most, in averages and table."""
    averages = node_averages({"worker-0": _rows("worker-0", [0.0, 900.0, 250.0, 60.0]),
                              "ps-0": _rows("ps-0", [0.0, 30.0, 20.0], cpu=10.0, old=True)})
    for a in averages.values():
        assert 0.0 <= a["cpu_wait_percent_mean"] <= a["cpu_wait_percent_max"] <= 100.0, a
    assert averages["worker-0"]["cpu_wait_percent_max"] == 100.0
    assert averages["worker-0"]["run_queue_delay_percent_mean"] == pytest.approx((900 + 250 + 60) / 3)
    assert averages["ps-0"]["cpu_wait_percent_mean"] == pytest.approx(25.0 - 10 * 0.4 * 1.5)  # old rows, recomputed
    table = averages_table({"node_averages": averages})
    cells = _wait_cells(table)
    assert len(cells) == 2 and all(0 <= float(v) <= 100 for c in cells for v in c.split(" / ")), cells
    assert OLD_WAIT_NOTE not in table


def test_published_runs_show_cpu_wait_from_0_to_100() -> None:
    """Every published run's table shows the per-node CPU wait, 0-100: no mean or peak above 100, and no note
    about a run without it."""
    summaries = [json.loads(p.read_text()) for p in sorted(PUBLISHED.glob("*/summary.json"))]
    summaries = [s for s in summaries if s.get("node_averages")]
    assert summaries, "no published run with node averages"
    for s in summaries:
        table = averages_table(s)
        assert "-" not in set(_wait_cells(table)) and OLD_WAIT_NOTE not in table, s["name"]
        for a in s["node_averages"].values():
            mean, peak, _ = wait_columns(a)
            assert 0 <= mean <= peak <= 100, (s["name"], a)


def test_a_summarised_run_is_recomputed_from_its_node_csvs(tmp_path: Path) -> None:
    """An old summary beside the CSVs of its old samples: the report's reader recomputes CPU wait from them."""
    old_fields = [f for f in FIELDS if f != "run_queue_delay_percent"]  # the columns old runs' CSVs have
    lines = [",".join(old_fields)] + [",".join(str(r[f]) for f in old_fields)
                                      for r in _rows("worker-0", [0.0, 160.0, 60.0], old=True)]
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "worker-0.csv").write_text("\n".join(lines) + "\n")
    stored = read_node_csvs(tmp_path / "nodes")["worker-0"]
    assert stored[1]["cpu_wait_percent"] == 160.0 and "run_queue_delay_percent" not in stored[1]
    assert stored[1]["node"] == "worker-0" and stored[1]["rss_bytes"] == 2**20
    summary = {"node_averages": {"worker-0": {"cpu_wait_percent_mean": 110.0, "cpu_percent_mean": 100.0}}}
    fresh = refresh_waits(summary, tmp_path)["node_averages"]["worker-0"]
    assert fresh["cpu_wait_percent_mean"] == pytest.approx(50.0) and fresh["cpu_wait_percent_max"] == 100.0
    assert fresh["run_queue_delay_percent_mean"] == pytest.approx(110.0)
    assert fresh["cpu_percent_mean"] == 100.0  # the rest as it was


def test_the_node_plot_draws_old_and_new_rows(tmp_path: Path) -> None:
    from ddl_commodity.artifacts.nodes import plot_node_metrics

    rows = {"worker-0": _rows("worker-0", [0.0, 160.0]), "ps-0": _rows("ps-0", [0.0, 20.0], old=True)}
    assert plot_node_metrics(rows, tmp_path / "nodes.png").stat().st_size > 1000


def test_node_csvs_read_back_what_was_written(tmp_path: Path) -> None:
    rows = _rows("worker-0", [0.0, 60.0])
    rows[1]["memory_limit"] = None
    write_node_csvs(rows, tmp_path)
    back = read_node_csvs(tmp_path)["worker-0"]
    assert [{k: r[k] for k in FIELDS} for r in rows] == back


# Each says when it is past the interpreter's start (reading its files, it is not always runnable).
BUSY = [sys.executable, "-c", "print('up', flush=True)\nwhile True: pass"]
IDLE = [sys.executable, "-c", "import time\nprint('up', flush=True)\ntime.sleep(60)"]


def _sample_nodes(groups: dict[str, cgroups.NodeGroup], seconds: float) -> dict[str, list[dict]]:
    """Two rows of a sampler per group, ``seconds`` apart; each sampler reads its group as a node's own.

    One long interval rather than the sampler's 1 s ones: ``schedstat`` adds a wait to a thread's delay when
    the wait ends, so an interval misses the waits in progress at its end and gets them in the next; on a
    loaded machine (waits of 100s of ms) that moves a 0.5 s interval's reading by tens of percent.
    """
    samplers = {}
    for name, group in groups.items():
        samplers[name] = NodeSampler(name, lambda rows: None)
        samplers[name]._group = group
    rows = {name: [vars(sampler.sample())] for name, sampler in samplers.items()}
    time.sleep(seconds)
    for name, sampler in samplers.items():
        rows[name].append(vars(sampler.sample()))
    return rows


@pytest.mark.serial  # measures what a 0.4 share gives: under the parallel part's load a node gets less
@needs_cgroups
def test_a_synthetic_node_in_a_real_cgroup() -> None:
    """Three nodes at 0.4 of a core: idle; one always-runnable thread; two. CPU wait reads 0, 0 and 100: one
    busy thread is its PC busy, though its run-queue delay reads the 60 % the share holds it back; with two,
    one always waits. On a loaded machine the one-thread node gets less than its share, and the shortfall is
    waiting its PC would not have done: it reads 100 - its CPU % of the share."""
    cid = uuid.uuid4().hex[:12]
    names = ("idle", "one", "two")
    groups = dict(zip(names, cgroups.create_node_groups(cid, dict.fromkeys(names, cgroups.NodeLimits(cpus=0.4))),
                      strict=True))
    procs = []
    try:
        for name, argvs in (("idle", [IDLE]), ("one", [BUSY]), ("two", [BUSY, BUSY])):
            procs += [subprocess.Popen(cgroups.enter_command(groups[name], argv), stdout=subprocess.PIPE, text=True)
                      for argv in argvs]
        assert all(p.stdout.readline() == "up\n" for p in procs)
        assert sum(len(g.pids()) for g in groups.values()) == len(procs)
        rows = _sample_nodes(groups, 3.0)
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        cgroups.remove_groups(groups.values())
    assert not any(Path(d).exists() for g in groups.values() for d in g.dirs.values())
    averages = node_averages(rows)
    said = {n: {k: round(a[k], 1) for k in ("cpu_percent_mean", "cpu_wait_percent_mean", "run_queue_delay_percent_mean",
                                          "throttled_percent_mean")} for n, a in averages.items()}
    assert averages["idle"]["cpu_wait_percent_max"] <= 2.0, said
    shortfall = max(0.0, 100.0 - rows["one"][1]["cpu_percent"])
    assert averages["one"]["cpu_wait_percent_mean"] == pytest.approx(shortfall, abs=5.0), said
    if averages["one"]["cpu_percent_mean"] >= 95.0:  # it got its share: its PC never waited
        assert averages["one"]["cpu_wait_percent_mean"] <= 5.0, said
        assert 50.0 <= averages["one"]["run_queue_delay_percent_mean"] <= 75.0, said
    assert averages["two"]["cpu_wait_percent_mean"] >= 90.0, said
    assert all(a["cpu_wait_percent_max"] <= 100.0 for a in averages.values()), said
