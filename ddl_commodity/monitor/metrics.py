"""Per-node figures from the sampler's rows (the thesis's Ganglia plots as numbers): per training step over
chosen windows, and whole-run averages (Figs 6.5-6.28)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
    """Per node over the whole run: mean and peak CPU % (of the node's share when it has one), mean CPU wait
    (per node, see :mod:`ddl_commodity.monitor.sampler`), mean and peak RSS, mean and peak memory of the node's
    group and its cap, mean MB/s in and out (the quantities of Figs 6.9, 6.12, 6.21-6.28)."""
    out = {}
    for node, rs in rows.items():
        span = rs[-1]["time"] - rs[0]["time"] if len(rs) > 1 else 0.0
        cpu = [r["cpu_percent"] for r in rs[1:]] or [0.0]
        out[node] = {
            "cpu_percent_mean": float(np.mean(cpu)), "cpu_percent_max": float(np.max(cpu)),
            "iowait_percent_mean": float(np.mean([r["iowait_percent"] for r in rs])),
            "cpu_wait_percent_mean": float(np.mean([r.get("cpu_wait_percent") or 0.0 for r in rs[1:]] or [0.0])),
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
