"""``ddl compare RUN RUN...``: runs side by side, as a user who reruns a YAML experiment with one change wants
to see them: overlaid curves (``compare.png``), and a table (``compare.md``, also printed) of the config keys
that differ and of each run's final metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from ddl_commodity.artifacts.curves import load_worker_curves
from ddl_commodity.errors import UserInputError
from ddl_commodity.runs import write_bytes_atomic
from ddl_commodity.summary import RunSummary

#: Final metrics shown first, in this order; every other ``final.val_*`` key follows.
_HEADLINE = ("wall_seconds", "val_loss", "val_accuracy")


@dataclass
class RunView:
    """What the comparison needs of one run directory."""

    label: str
    config: dict[str, object]
    status: str
    final: dict[str, object]
    curves: dict[str, list[dict]]
    validation: tuple[str, str]


def flatten(doc: dict, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    out: dict[str, object] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        out.update(flatten(value, name + ".") if isinstance(value, dict) else {name: value})
    return out


def load_run(run_dir: Path) -> RunView:
    """A run directory's config, status, final metrics and curves; :class:`UserInputError` if it is none."""
    import json

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserInputError(f"{run_dir}: not a run directory (no config.yaml)")
    config = flatten(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {})
    status_file = run_dir / "status.json"
    status = json.loads(status_file.read_text())["state"] if status_file.is_file() else "unknown"
    summary = RunSummary.read(run_dir) if (run_dir / "summary.json").is_file() else None
    final = {"wall_seconds": summary.wall_seconds, **summary.final} if summary else {"wall_seconds": None}
    return RunView(run_dir.name, config, status, final, load_worker_curves(run_dir), _validation_curve(config))


def _validation_curve(config: dict[str, object]) -> tuple[str, str]:
    from ddl_commodity.errors import DdlError
    from ddl_commodity.experiments.registry import view_of
    from ddl_commodity.experiments.view import ExperimentView

    try:
        return view_of(str(config.get("experiment"))).validation_curve
    except DdlError:  # a user's experiment not importable here: the generic panel
        return ExperimentView.validation_curve


def comparison_table(runs: list[RunView]) -> list[str]:
    """Markdown: config keys whose values differ, then final metrics, one column per run."""
    head = ["| | " + " | ".join(r.label for r in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    keys = sorted({k for r in runs for k in r.config})
    differ = [k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1]
    lines = ["## Configuration: the keys that differ", ""]
    if differ:
        lines += head + [_row(f"`{k}`", [r.config.get(k, "-") for r in runs]) for k in differ]
    else:
        lines.append("The configurations are identical.")
    metrics = list(_HEADLINE) + sorted({k for r in runs for k in r.final if k.startswith("val_")} - set(_HEADLINE))
    lines += ["", "## Final metrics (the final model on the held-out rows)", "", *head,
              _row("status", [r.status for r in runs])]
    lines += [_row(m, [r.final.get(m) for r in runs]) for m in metrics if any(r.final.get(m) is not None for r in runs)]
    return lines


def _row(name: str, values: list[object]) -> str:
    return f"| {name} | " + " | ".join(_cell(v) for v in values) + " |"


def _cell(v: object) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def plot_comparison(runs: list[RunView], out: Path) -> Path:
    """Training accuracy, training loss and the held-out score per epoch; one colour per run, one line per
    worker of it (``single`` dashed)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key, label_text = runs[0].validation
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for colour, run in enumerate(runs):
        for i, (worker, records) in enumerate(run.curves.items()):
            epochs = [r["epoch"] for r in records]
            style = {"color": f"C{colour}", "linestyle": "--" if worker == "single" else "-", "alpha": 0.85,
                     "label": run.label if i == 0 else None}
            axes[0].plot(epochs, [r["accuracy"] for r in records], **style)
            axes[1].plot(epochs, [r["loss"] for r in records], **style)
            points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
            if points:
                axes[2].plot(*zip(*points, strict=True), **style)
            adopted = [(r["epoch"], r[f"global_{key}"]) for r in records if r.get(f"global_{key}") is not None]
            if adopted and i == 0:  # every worker adopts the same global model: draw it once
                axes[2].plot(*zip(*adopted, strict=True), color=f"C{colour}", linestyle=":", marker="x",
                             label=f"{run.label}: global model")
    from matplotlib.ticker import MaxNLocator

    for ax, ylabel in zip(axes, ("training accuracy", "training loss", label_text), strict=True):
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("one colour per run; one line per worker (single machine dashed); x: the global model from the PS")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return write_bytes_atomic(out, buf.getvalue())


def compare_runs(run_dirs: list[Path], out: Path) -> Path:
    """Write ``out/compare.md`` and ``out/compare.png``; returns the Markdown file."""
    if len(run_dirs) < 2:
        raise UserInputError("ddl compare needs at least two run directories")
    if Path(out).exists() and not Path(out).is_dir():
        raise UserInputError(f"--out {out}: is a file; give the directory for compare.md and compare.png")
    runs = [load_run(d) for d in run_dirs]
    if len({r.label for r in runs}) < len(runs):  # same directory names under different parents
        runs = [replace(r, label=str(d)) for d, r in zip(run_dirs, runs, strict=True)]
    lines = [f"# Comparison of {len(runs)} runs", "", "![curves](compare.png)", "", *comparison_table(runs)]
    if any(r.curves for r in runs):
        plot_comparison(runs, Path(out) / "compare.png")
    else:
        lines.remove("![curves](compare.png)")
    return write_bytes_atomic(Path(out) / "compare.md", ("\n".join(lines) + "\n").encode())
