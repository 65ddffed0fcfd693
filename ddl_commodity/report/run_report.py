"""``ddl report RUN_DIR``: a Markdown report of one run of any experiment (thesis Tables 5.1 and 5.2, and for
monitored runs the per-node tables of chapter 6), read from its typed summary."""

from __future__ import annotations

from pathlib import Path

from ddl_commodity.artifacts.curves import load_worker_curves, plot_curves
from ddl_commodity.artifacts.tensorboard import BOARD_DIR, rebuild_board
from ddl_commodity.errors import DdlError, UserInputError
from ddl_commodity.experiments.view import ExperimentView
from ddl_commodity.monitor.metrics import refresh_waits
from ddl_commodity.report.node_tables import node_sections
from ddl_commodity.runs import write_bytes_atomic
from ddl_commodity.summary import RunSummary


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def plateau_table(plateau: dict[str, dict[str, int | None]]) -> list[str]:
    """Rows of workers, one column per early-stopping criterion; ``-`` = no plateau within the run."""
    criteria = list(plateau)
    workers = sorted({w for per in plateau.values() for w in per}, key=lambda w: (w != "single", w))
    lines = ["| worker | " + " | ".join(criteria) + " |", "|---" * (len(criteria) + 1) + "|"]
    for w in workers:
        cells = [_fmt(plateau[c].get(w)) + (" epochs" if plateau[c].get(w) else "") for c in criteria]
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    return lines


def per_epoch_table(curves: dict[str, list[dict]], validation: tuple[str, str] | None = None) -> list[str]:
    """One row per worker epoch; ``validation`` = (key, label) adds the experiment's held-out score."""
    extra = validation if validation and validation[0] not in ("val_loss", "val_accuracy") else None
    head = "| worker | epoch | loss | accuracy | val loss | val accuracy |" + (f" {extra[1]} |" if extra else "")
    lines = ["## Per-epoch results", "", head + " samples | seconds |", "|---" * (8 + bool(extra)) + "|"]
    for name, recs in curves.items():
        for r in recs:
            cell = f" {_fmt(r.get(extra[0]))} |" if extra else ""
            lines.append(f"| {name} | {r['epoch']} | {_fmt(r['loss'])} | {_fmt(r['accuracy'])} | "
                         f"{_fmt(r.get('val_loss'))} | {_fmt(r.get('val_accuracy'))} |{cell} {r['samples']} | "
                         f"{r['seconds']:.1f} |")
    return lines


def _view(summary: RunSummary) -> ExperimentView:
    from ddl_commodity.experiments.registry import view_of

    try:
        return view_of(summary.experiment)
    except DdlError:  # a user's experiment that cannot be imported here: the generic report still stands
        return ExperimentView()


def write_run_report(run_dir: Path) -> Path:
    """Rebuild ``curves.png`` and write ``report.md``; the run must have finished (``summary.json``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserInputError(f"{run_dir}: no such run directory")
    if not (run_dir / "summary.json").is_file() and not (run_dir / "status.json").is_file():
        raise UserInputError(f"{run_dir}: not a run directory (no summary.json, no status.json) nor a "
                             "reproduction (no reproduce.json)")
    if not (run_dir / "summary.json").is_file():
        raise UserInputError(f"{run_dir}: no summary.json; the run did not finish (see its status.json)")
    summary = RunSummary.read(run_dir)
    doc = refresh_waits(summary.to_dict(), run_dir)  # a run of before CPU wait was 0-100: recomputed
    curves = load_worker_curves(run_dir)
    view = _view(summary)
    validation = view.validation_curve
    if curves:
        plot_curves(curves, run_dir / "curves.png", title=summary.description, validation=validation)
        if not (run_dir / BOARD_DIR).is_dir():  # a run from before the event files existed
            rebuild_board(run_dir)
    samples = (f"; {summary.train_samples} training / {summary.validation_samples} validation samples"
               if summary.train_samples is not None else "")
    lines = [f"# Run {run_dir.name}", "", f"{summary.description}; {summary.wall_seconds:.0f} s wall time{samples}.",
             *_cluster_lines(doc.get("cluster")), ""]
    if curves:
        lines += ["![accuracy and loss per epoch](curves.png)", ""]
    lines += per_epoch_table(curves, validation)
    if summary.epochs_to_plateau:
        lines += ["", "## Epochs to a plateau (cf. thesis Tables 5.1, 5.2)", ""]
        lines += plateau_table(summary.epochs_to_plateau)
    check = doc.get("data_distribution_check")
    if check:
        lines += ["", f"Data distribution `{check['mode']}`: "
                  + ("confirmed by the workers' index digests." if check["consistent"]
                     else "**not confirmed**: " + "; ".join(check["problems"]))]
    lines += node_sections(doc)
    lines += view.report_lines(doc)
    out = run_dir / "report.md"
    write_bytes_atomic(out, ("\n".join(lines) + "\n").encode())
    return out


def _cluster_lines(cluster: dict | None) -> list[str]:
    """What the nodes were: the profile, d and the time in cluster seconds, or the explicit node limits."""
    if not cluster:
        return []
    cpus = f"{cluster['node_cpus']:g} core" if cluster.get("node_cpus") else "all cores"
    memory = f"{cluster['node_memory'] / 2**30:.1f} GiB" if cluster.get("node_memory") else "no memory cap"
    text = f"Each node: {cpus}, {memory}, in its own control group"
    if cluster.get("profile"):
        text += (f"; cluster profile `{cluster['profile']}`, time dilation d = {cluster['dilation']:g}: "
                 f"{cluster['wall_cluster_seconds']:.0f} cluster seconds (the emulated cluster's time)")
    return ["", text + "."]
