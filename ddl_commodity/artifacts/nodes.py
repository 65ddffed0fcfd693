"""Per-node resource plots, the counterpart of the thesis's Ganglia figures (Figs 6.5-6.28)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ddl_commodity.monitor.cpu_wait import upgrade_row


def rates(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(time since first sample, per-second rate) of a cumulative counter."""
    t = np.array([r["time"] for r in rows], dtype=float)
    v = np.array([r[key] for r in rows], dtype=float)
    if len(t) < 2:
        return t[:0], v[:0]
    dt = np.diff(t)
    dt[dt <= 0] = np.nan
    return t[1:] - t[0], np.diff(v) / dt


def plot_node_metrics(rows: dict[str, list[dict]], out: Path, title: str = "") -> Path:
    """Five panels over time, one line per node: CPU %, CPU wait %, memory, network in and out (MB/s)."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    from ddl_commodity.runs import write_bytes_atomic

    t0 = min(rs[0]["time"] for rs in rows.values())
    fig, axes = plt.subplots(5, 1, figsize=(10, 12), sharex=True)
    for node, rs in sorted(rows.items()):
        t = np.array([r["time"] for r in rs]) - t0
        axes[0].plot(t, [r["cpu_percent"] for r in rs], label=node)
        waits = [upgrade_row(r)["cpu_wait_percent"] for r in rs]
        axes[1].plot(t, [np.nan if w is None else w for w in waits], label=node)
        axes[2].plot(t, [(r.get("memory_bytes") or r["rss_bytes"]) / 2**20 for r in rs], label=node)
        for ax, key in ((axes[3], "net_rx_bytes"), (axes[4], "net_tx_bytes")):
            tr, v = rates(rs, key)
            ax.plot(tr + (rs[0]["time"] - t0), v / 1e6, label=node)
    shared = all(r.get("cpu_share") is not None for rs in rows.values() for r in rs)
    labels = ("CPU % of the node's share" if shared else "CPU % (of one core)", "CPU wait % (0-100)",
              "node memory (MB)", "network in (MB/s)", "network out (MB/s)")
    for ax, label in zip(axes, labels, strict=True):
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", ncol=4, fontsize="small")
    axes[-1].set_xlabel("seconds since the first sample")
    method = next(iter(rows.values()))[0].get("net_method", "")
    fig.suptitle(f"{title}\n(network: {method})" if title else f"network: {method}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return write_bytes_atomic(Path(out), buf.getvalue())


def node_series(rows: dict[str, list[dict]], max_points: int = 300) -> dict[str, dict[str, list]]:
    """Per node, the samples the thesis's Ganglia plots show (Figs 6.5-6.28), thinned to ``max_points``.

    Args:
        rows: sampler rows per node (:func:`ddl_commodity.monitor.metrics.node_rows`).
        max_points: at most this many points per node; rates are over the whole span between kept points.

    Returns:
        ``{node: {"t": seconds since the run's first sample, "cpu": %, "wait": CPU wait % (0-100, None where it
        cannot be known), "memory": MB, "rx": MB/s in, "tx": MB/s out}}``, lists of one length per node.
    """
    if not rows:
        return {}
    t0 = min(rs[0]["time"] for rs in rows.values() if rs)
    out = {}
    for node, rs in rows.items():
        if len(rs) < 2:
            continue
        step = max(1, -(-(len(rs) - 1) // max_points))
        kept = [upgrade_row(r) for r in rs[::step]]
        rx, tx = (np.diff([r[k] for r in kept]) for k in ("net_rx_bytes", "net_tx_bytes"))
        dt = np.maximum(np.diff([r["time"] for r in kept]), 1e-9)
        out[node] = {
            "t": [round(r["time"] - t0, 2) for r in kept[1:]],
            "cpu": [round(r["cpu_percent"], 2) for r in kept[1:]],
            "wait": [None if r.get("cpu_wait_percent") is None else round(r["cpu_wait_percent"], 2) for r in kept[1:]],
            "memory": [round((r.get("memory_bytes") or r["rss_bytes"]) / 2**20, 1) for r in kept[1:]],
            "rx": [round(float(v), 3) for v in rx / dt / 1e6],
            "tx": [round(float(v), 3) for v in tx / dt / 1e6],
        }
    return out
