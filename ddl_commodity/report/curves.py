"""Per-worker training curves: accuracy and loss per epoch (thesis Figs 5.3 and 5.6)."""

from __future__ import annotations

from pathlib import Path

from ddl_commodity.runs import read_jsonl


def load_worker_curves(run_dir: Path) -> dict[str, list[dict]]:
    """``{worker name: [epoch record, ...]}`` from ``run_dir/workers/*.jsonl``, sorted by epoch."""
    curves = {}
    for path in sorted((Path(run_dir) / "workers").glob("*.jsonl")):
        records = sorted(read_jsonl(path), key=lambda r: r["epoch"])
        if records:
            curves[path.stem] = records
    return curves


def plot_curves(curves: dict[str, list[dict]], out: Path, title: str = "") -> Path:
    """Two panels, accuracy and loss against epoch, one line per worker; the baseline is dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ddl_commodity.runs import write_bytes_atomic

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, records in curves.items():
        epochs = [r["epoch"] for r in records]
        style = {"linestyle": "--", "color": "black"} if name == "single" else {"marker": "o", "markersize": 3}
        label = "single machine" if name == "single" else name
        ax_acc.plot(epochs, [r["accuracy"] for r in records], label=label, **style)
        ax_loss.plot(epochs, [r["loss"] for r in records], label=label, **style)
    ax_acc.set(xlabel="epoch", ylabel="training accuracy", title="Accuracy (cf. thesis Fig 5.3)")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Loss (cf. thesis Fig 5.6)")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_acc, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return write_bytes_atomic(Path(out), buf.getvalue())
