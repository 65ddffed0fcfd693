"""Per-node figures from the sampler's rows (the thesis's Ganglia plots as numbers): per training step over
chosen windows, and whole-run averages (Figs 6.5-6.28)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ddl_commodity.monitor.cpu_wait import WAIT_KEYS, upgrade_row


def node_rows(run_dir: Path) -> dict[str, list[dict]]:
    """Sampler rows per node from ``nodes/<node>.jsonl`` (batches as the nodes sent them)."""
    from ddl_commodity.runs import read_jsonl

    out: dict[str, list[dict]] = {}
    for p in sorted((Path(run_dir) / "nodes").glob("*.jsonl")):
        rows = [row for rec in read_jsonl(p) for row in rec.get("rows", [])]
        if rows:
            out[p.stem] = sorted(rows, key=lambda r: r["time"])
    return out


def measured_per_step(rows: dict[str, list[dict]], windows: list[tuple[float, float, int]]) -> dict[str, dict]:
    """Per node: CPU seconds and network bytes per training step, summed over the training windows
    (start, end, steps) of the epochs, from interpolated cumulative counters (evaluation excluded)."""
    from ddl_commodity.monitor.sampler import counters_at

    steps = sum(w[2] for w in windows)
    out = {}
    for node, rs in rows.items():
        tot = {"cpu_seconds": 0.0, "net_rx_bytes": 0.0, "net_tx_bytes": 0.0}
        for start, end, _ in windows:
            for key in tot:
                tot[key] += counters_at(rs, end, key) - counters_at(rs, start, key)
        wall = sum(e - s for s, e, _ in windows)
        out[node] = {
            "cpu_seconds_per_step": tot["cpu_seconds"] / steps if steps else None,
            "cpu_share_percent": 100.0 * tot["cpu_seconds"] / wall if wall else None,
            "rx_bytes_per_step": tot["net_rx_bytes"] / steps if steps else None,
            "tx_bytes_per_step": tot["net_tx_bytes"] / steps if steps else None,
            "rx_mb_per_s": tot["net_rx_bytes"] / wall / 1e6 if wall else None,
            "tx_mb_per_s": tot["net_tx_bytes"] / wall / 1e6 if wall else None,
            "seconds_per_step": wall / steps if steps else None,
            "method": rs[0].get("net_method"),
            "mean_rss_mb": float(np.mean([r["rss_bytes"] for r in rs])) / 2**20,
        }
    return out


def compare_traffic(measured: dict[str, dict], computed: dict) -> dict[str, dict]:
    """Per node: measured vs shape-computed bytes per step (ratio = measured / computed)."""
    out = {}
    for node, m in sorted(measured.items()):
        c = computed["per_node"].get(node.replace("-", ":"), {"rx_bytes": 0, "tx_bytes": 0})
        row = {}
        for d in ("rx", "tx"):
            got, want = m[f"{d}_bytes_per_step"], c[f"{d}_bytes"]
            row[f"{d}_measured"] = round(got) if got is not None else None
            row[f"{d}_computed"] = want
            row[f"{d}_ratio"] = round(got / want, 3) if want and got is not None else None
        out[node] = row
    return out


def node_averages(rows: dict[str, list[dict]]) -> dict[str, dict]:
    """Per node over the whole run: mean and peak CPU % (of the node's share when it has one), mean and peak CPU
    wait with the run-queue delay and throttling beside it (:mod:`ddl_commodity.monitor.cpu_wait`; rows sampled
    before it was defined are recomputed), mean and peak RSS, mean and peak memory of the node's group and its
    cap, mean MB/s in and out (the quantities of Figs 6.9, 6.12, 6.21-6.28)."""
    out = {}
    for node, rs in rows.items():
        rs = [upgrade_row(r) for r in rs]
        span = rs[-1]["time"] - rs[0]["time"] if len(rs) > 1 else 0.0
        cpu = [r["cpu_percent"] for r in rs[1:]] or [0.0]
        out[node] = {
            "cpu_percent_mean": float(np.mean(cpu)), "cpu_percent_max": float(np.max(cpu)),
            "iowait_percent_mean": float(np.mean([r["iowait_percent"] for r in rs])),
            **_waits(rs[1:]),
            "cpu_share": rs[-1].get("cpu_share"),
            "memory_mb_max": _max_mb(rs, "memory_bytes"),
            "memory_mb_mean": _mean_mb(rs, "memory_bytes"),
            "memory_limit_mb": _max_mb(rs, "memory_limit"),
            "rss_mb_mean": float(np.mean([r["rss_bytes"] for r in rs])) / 2**20,
            "rss_mb_max": float(np.max([r["rss_bytes"] for r in rs])) / 2**20,
            "rx_mb_per_s": (rs[-1]["net_rx_bytes"] - rs[0]["net_rx_bytes"]) / span / 1e6 if span else None,
            "tx_mb_per_s": (rs[-1]["net_tx_bytes"] - rs[0]["net_tx_bytes"]) / span / 1e6 if span else None,
            "seconds": span,
            **_parts(rs),
        }
    return out


def _waits(rows: list[dict]) -> dict:
    """Whole-run CPU wait (mean and peak; None when a row could not give it), run-queue delay and throttling
    (means), all % (:mod:`ddl_commodity.monitor.cpu_wait`), over the rows that hold rates (all but the first)."""
    waits = [r.get("cpu_wait_percent") for r in rows] or [0.0]
    known = None not in waits
    return {"cpu_wait_percent_mean": float(np.mean(waits)) if known else None,
            "cpu_wait_percent_max": float(np.max(waits)) if known else None,
            "run_queue_delay_percent_mean": float(np.mean([r.get("run_queue_delay_percent") or 0.0 for r in rows]
                                                          or [0.0])),
            "throttled_percent_mean": float(np.mean([r.get("throttled_percent") or 0.0 for r in rows] or [0.0]))}


def refresh_waits(summary: dict, run_dir: Path) -> dict:
    """A summary whose node averages predate the CPU wait of :mod:`ddl_commodity.monitor.cpu_wait`, with the
    wait figures recomputed from the run's stored samples (``nodes/*.jsonl`` or ``nodes/*.csv``) where they are
    there; otherwise the summary as it is (its old figure then reads as run-queue delay, see
    :func:`~ddl_commodity.monitor.cpu_wait.wait_columns`).

    Args:
        summary: a run's ``summary.json``, read.
        run_dir: the run's directory (its ``nodes/`` may be gone, as in published runs).

    Returns:
        ``summary``, or a copy with new ``node_averages`` entries for the nodes whose samples were found.
    """
    from ddl_commodity.monitor.sampler import read_node_csvs

    averages = summary.get("node_averages") or {}
    if all(a.get("run_queue_delay_percent_mean") is not None for a in averages.values()):
        return summary
    rows = node_rows(run_dir) or read_node_csvs(Path(run_dir) / "nodes")
    fresh = node_averages({n: rs for n, rs in rows.items() if n in averages})
    if not fresh:
        return summary
    updated = {n: {**a, **{k: fresh[n][k] for k in WAIT_KEYS}} if n in fresh else a for n, a in averages.items()}
    return {**summary, "node_averages": updated}


def _parts(rows: list[dict]) -> dict:
    """CPU seconds per part of the node over the run, and each part's peak proportional MB (sampler's docstring)."""
    first, last = rows[0].get("cpu_seconds_by_part"), rows[-1].get("cpu_seconds_by_part")
    if last is None:
        return {}
    cpu = {k: round(v - (first or {}).get(k, 0.0), 2) for k, v in last.items()}
    peak: dict[str, float] = {}
    for r in rows:
        for k, v in (r.get("pss_bytes_by_part") or {}).items():
            peak[k] = max(peak.get(k, 0.0), v / 2**20)
    return {"cpu_seconds_by_part": cpu, "pss_mb_max_by_part": {k: round(v, 1) for k, v in peak.items()}}


def _mean_mb(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) / 2**20 if values else None


def _max_mb(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(max(values)) / 2**20 if values else None
