"""The figures the claims rest on, drawn the way the thesis drew them: per-worker box plots of CPU, CPU wait and
memory samples (Figs 6.9, 6.12-6.14, 6.17, 6.20-6.24: box, grey sample dots, red mean, pink median), traffic in
and out over time per node (Figs 6.5-6.8, 6.11, 6.16, 6.19, 6.25-6.28), accuracy and loss per epoch per worker
(Figs 5.3, 5.6) and epochs to a plateau per cluster (Fig 5.4).

:func:`draw` takes a claim's ``draws`` key (``cpu_box:landcover-default-8k``) and returns the PNG's file name,
or None when the runs at hand do not hold what the figure needs (a published run without its samples).
"""

from __future__ import annotations

import io
import statistics
from pathlib import Path

from ddl_commodity.reproduce.measures import PLATEAU, roles, time_to_plateau
from ddl_commodity.reproduce.runsets import config_and_seed, redshift_run
from ddl_commodity.runs import write_bytes_atomic

_BOX = {"cpu": ("CPU % (of the node's share)", "CPU per worker"), "wait": ("CPU wait % (0-100)", "CPU wait per worker"),
        "memory": ("memory MB", "memory per worker")}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=80)
    _plt().close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return path.name


def _labels(s: dict) -> dict[str, str]:
    """``{node: "worker-1 (hsi)"}``: each node with its role."""
    return {n: f"{n} ({r})" for r, n in roles(s).items()} | {
        n: n for n in s.get("node_series", {}) if n not in roles(s).values()}


def box(s: dict, metric: str, path: Path) -> str | None:
    """One box per node of its samples of ``metric`` (``cpu``, ``wait``, ``memory``), as Figs 6.9 and 6.13."""
    series = s.get("node_series") or {}
    data = {n: [v for v in ser[metric] if v is not None] for n, ser in sorted(series.items())}
    data = {n: v for n, v in data.items() if v}
    if not data:
        return None
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = _labels(s)
    ax.boxplot(list(data.values()), showfliers=False)
    rng = np.random.default_rng(0)
    for i, values in enumerate(data.values(), start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=6, color="grey", alpha=0.5, zorder=2)
        ax.scatter([i], [statistics.mean(values)], color="red", zorder=3, label="mean" if i == 1 else None)
        ax.scatter([i], [statistics.median(values)], color="pink", edgecolor="black", zorder=3,
                   label="median" if i == 1 else None)
    ax.set_xticks(range(1, len(data) + 1), [labels.get(n, n) for n in data], rotation=15)
    ylabel, title = _BOX[metric]
    ax.set(ylabel=ylabel, title=f"{s.get('name')}: {title}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def traffic(s: dict, path: Path) -> str | None:
    """MB/s in and out over time, one line per node, as Figs 6.6-6.8."""
    series = s.get("node_series") or {}
    if not series:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharex=True)
    labels = _labels(s)
    for node, ser in sorted(series.items()):
        for ax, key in zip(axes, ("rx", "tx"), strict=True):
            ax.plot(ser["t"], ser[key], label=labels.get(node, node), linewidth=1)
    for ax, what in zip(axes, ("incoming", "outgoing"), strict=True):
        ax.set(xlabel="seconds since the first sample", ylabel=f"{what} MB/s", title=f"{s.get('name')}: {what}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return _save(fig, path)


def batch_traffic(summaries: dict[str, dict], path: Path) -> str | None:
    """The cluster's MB/s in and out over time at batch 10, 50 and 200, as Fig 6.5."""
    runs = {b: summaries.get(f"landcover-batch{b}", {}).get("node_series") for b in (10, 50, 200)}
    if not any(runs.values()):
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for b, series in runs.items():
        if not series:
            continue
        n = min(len(s["t"]) for s in series.values())
        t = next(iter(series.values()))["t"][:n]
        for ax, key in zip(axes, ("rx", "tx"), strict=True):
            ax.plot(t, [sum(s[key][i] for s in series.values()) for i in range(n)], label=f"batch {b}")
    for ax, what in zip(axes, ("incoming (a)", "outgoing (b)"), strict=True):
        ax.set(xlabel="seconds since the first sample", ylabel="cluster MB/s", title=f"cluster traffic, {what}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, path)


def _cell_runs(summaries: dict[str, dict], size: str, dist: str) -> dict[str, dict]:
    cells = {"single": redshift_run(size, dist, "single"),
             **{f"{w[0]} worker{'s' if w != '1w' else ''}": redshift_run(size, dist, w) for w in ("1w", "2w", "3w")}}
    return {label: summaries[run] for label, run in cells.items() if run in summaries}


def epochs(summaries: dict[str, dict], size: str, key: str, path: Path) -> str | None:
    """Training ``key`` (accuracy or loss) per epoch, one line per worker, same and disjoint data, as Figs 5.3
    and 5.6 (seed 1)."""
    from matplotlib.ticker import MaxNLocator

    panels = {dist: _cell_runs(summaries, size, dist) for dist in ("same", "disjoint")}
    if not any(s.get("epoch_curves") for runs in panels.values() for s in runs.values()):
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, (dist, runs) in zip(axes, panels.items(), strict=True):
        for colour, (label, s) in enumerate(runs.items()):
            for i, curve in enumerate((s.get("epoch_curves") or {}).values()):
                ax.plot([r["epoch"] for r in curve], [r[key] for r in curve], color=f"C{colour}",
                        linestyle="--" if label == "single" else "-", label=label if i == 0 else None)
        ax.set(xlabel="epoch", ylabel=f"training {key}", title=f"{size.upper()} samples, {dist} data")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    return _save(fig, path)


def plateaus(summaries: dict[str, dict], size: str, path: Path) -> str | None:
    """Epochs to the accuracy plateau (patience 1, min delta 0.001) per cluster size, as Fig 5.4: bars at the
    median of the workers of seed 1, a dot per seed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn, labelled = False, set()
    for j, dist in enumerate(("same", "disjoint")):
        for i, cell in enumerate(("single", "1w", "2w", "3w")):
            base = redshift_run(size, dist, cell)
            values = []
            for name, s in summaries.items():
                if config_and_seed(name)[0] == base and (plateau := time_to_plateau(s, PLATEAU)) is not None:
                    values.append(plateau[1])  # as the claims count: a worker that never got there, epochs + 1
            if values:
                drawn = True
                x = i + (j - 0.5) * 0.4
                ax.bar(x, statistics.median(values), 0.38, color=f"C{j}",
                       label=None if dist in labelled else f"{dist} data")
                labelled.add(dist)
                ax.scatter([x] * len(values), values, color="black", s=10, zorder=3)
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xticks(range(4), ["single", "1 worker", "2 workers", "3 workers"])
    ax.set(ylabel="epochs to plateau (workers' median;\nbar: seeds' median, dots: each seed)",
           title=f"{size.upper()}: epochs to a stable training accuracy (patience 1, min delta 0.001)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def draw(key: str, summaries: dict[str, dict], fig_dir: Path) -> str | None:
    """The PNG (file name in ``fig_dir``) of a claim's ``draws`` key; None when the runs cannot give it."""
    kind, _, arg = key.partition(":")
    path = Path(fig_dir) / f"{kind}-{arg or 'all'}.png".replace("_", "-")
    if kind in ("cpu_box", "wait_box", "memory_box"):
        return box(summaries[arg], kind.split("_")[0], path) if arg in summaries else None
    if kind == "traffic":
        return traffic(summaries[arg], path) if arg in summaries else None
    if kind == "batch_traffic":
        return batch_traffic(summaries, path)
    if kind in ("accuracy", "loss"):
        return epochs(summaries, arg, kind, path)
    if kind == "plateau":
        return plateaus(summaries, arg, path)
    return None
