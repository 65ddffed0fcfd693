"""Per-worker training curves: accuracy and loss per epoch (thesis Figs 5.3 and 5.6), and the held-out score."""

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


def plot_curves(curves: dict[str, list[dict]], out: Path, validation: tuple[str, str], title: str = "") -> Path:
    """Training accuracy and loss against epoch, one line per worker (the baseline dashed), and a third panel
    with the held-out score ``validation`` = (record key, label): each worker's replica, and with ``x`` the
    global model it adopted from the PS (``global_<key>``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ddl_commodity.runs import write_bytes_atomic

    key, label_text = validation
    fig, (ax_acc, ax_loss, ax_val) = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, (name, records) in enumerate(curves.items()):
        epochs = [r["epoch"] for r in records]
        colour = "black" if name == "single" else f"C{i}"
        style = {"linestyle": "--"} if name == "single" else {"marker": "o", "markersize": 3}
        label = "single machine" if name == "single" else name
        ax_acc.plot(epochs, [r["accuracy"] for r in records], label=label, color=colour, **style)
        ax_loss.plot(epochs, [r["loss"] for r in records], label=label, color=colour, **style)
        _plot_key(ax_val, records, key, label, colour, style)
        _plot_key(ax_val, records, f"global_{key}", f"{name}: global model", colour, {"marker": "x", "linestyle": ":"})
    ax_acc.set(xlabel="epoch", ylabel="training accuracy", title="Accuracy (cf. thesis Fig 5.3)")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Loss (cf. thesis Fig 5.6)")
    ax_val.set(xlabel="epoch", ylabel=label_text, title=label_text[:1].upper() + label_text[1:])
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_acc, ax_loss, ax_val):
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


def _plot_key(ax, records: list[dict], key: str, label: str, colour: str, style: dict) -> None:
    points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
    if points:
        ax.plot(*zip(*points, strict=True), label=label, color=colour, **style)
