"""Run one experiment: the config goes in, a finished ``runs/<id>/`` comes out (see :mod:`ddl_commodity.runs`).

:func:`run_experiment` writes the resolved config, prepares the data, hands the run to the engine its
``training.mode`` names and writes the typed summary last; whatever ends it otherwise marks the run failed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ddl_commodity.config import FaultSettings, RunConfig, config_to_dict
from ddl_commodity.experiments.api import Dataset, Experiment
from ddl_commodity.experiments.registry import view_of
from ddl_commodity.runs import record_outcome, set_status, write_yaml_atomic
from ddl_commodity.summary import RunSummary, WorkerSummary

if TYPE_CHECKING:
    from ddl_commodity.runtime.session import SparkSource


def run_experiment(experiment: Experiment, cfg: RunConfig, run_dir: Path, progress: bool | None = None,
                   resume: bool = False, spark: SparkSource | None = None) -> dict:
    """Train as ``cfg.training.mode`` says and return the summary (also written to ``summary.json``).

    Args:
        progress: live bars within epochs (``None``: only if stdout is a terminal).
        resume: continue a failed data-parallel run in ``run_dir`` from its last PS checkpoint.
        spark: where a distributed run's SparkContext comes from (default: this process's).
    """
    from ddl_commodity.engines import data_parallel, model_parallel, single

    run_dir = Path(run_dir)
    resumed = None
    if resume:
        cfg = cfg.model_copy(update={"faults": FaultSettings()})  # a resumed run must not re-inject its fault
        resumed = data_parallel.resume_point(cfg, run_dir)
        set_status(run_dir, "running", resumed_from_version=resumed["from_version"])
    else:
        write_yaml_atomic(run_dir / "config.yaml", config_to_dict(cfg))
    started = time.time()

    def train_and_summarize() -> dict:
        data = experiment.dataset(cfg, progress)
        engine = cfg.training.engine
        sections: dict = {}
        if engine == "single":
            final = single.train_single(experiment, cfg, data, run_dir, progress=progress)
        elif engine == "data_parallel":
            final, sections = data_parallel.train(experiment, cfg, data, run_dir, resumed, progress, spark)
            if cfg.training.baseline:
                single.train_single(experiment, cfg, data, run_dir, save_model=False)
        else:
            final, sections = model_parallel.train(experiment, cfg, data, run_dir, progress, spark)
        summary = summarize(experiment, cfg, run_dir, data, final, time.time() - started)
        summary.sections.update(monitoring_sections(run_dir, f"{cfg.name}: {summary.description}"))
        summary.sections.update(sections)
        summary.sections.update(experiment.summary_sections(cfg, run_dir, data))
        summary.sections.update(cluster_section(cfg, summary.wall_seconds))
        if resumed:
            summary.sections["resumed"] = resumed
        return summary.to_dict()

    return record_outcome(run_dir, train_and_summarize)


def summarize(experiment: Experiment, cfg: RunConfig, run_dir: Path, data: Dataset, final: dict,
              seconds: float) -> RunSummary:
    """What every run's summary has: per-worker results, epochs to plateau per criterion, curves."""
    from ddl_commodity.artifacts.curves import load_worker_curves, plot_curves
    from ddl_commodity.artifacts.early_stopping import epochs_to_plateau

    curves = load_worker_curves(run_dir)
    plateau = {
        f"{c.monitor}/patience={c.patience}/min_delta={c.min_delta:g}": {
            name: epochs_to_plateau([r[c.monitor] for r in recs if r.get(c.monitor) is not None], c.monitor,
                                    c.patience, c.min_delta)
            for name, recs in curves.items()}
        for c in cfg.early_stopping
    }
    description = experiment.describe(cfg)
    if curves:
        plot_curves(curves, run_dir / "curves.png", title=f"{cfg.name}: {description}",
                    validation=view_of(experiment).validation_curve)
    workers = {name: WorkerSummary.of(recs) for name, recs in curves.items()}
    return RunSummary(
        name=cfg.name, experiment=cfg.experiment, mode=cfg.training.mode, description=description,
        wall_seconds=round(seconds, 2), data=str(data.path), train_samples=len(data.train_index),
        validation_samples=len(data.validation_index), workers=workers, epochs_to_plateau=plateau, final=final,
        curves="curves.png" if curves else None)


def cluster_section(cfg: RunConfig, wall_seconds: float) -> dict:
    """``{"cluster": ...}``: the profile and node limits the run asked for, d, and its wall time in cluster
    seconds (measured x d, the time the emulated cluster would take); empty for an unisolated run."""
    from ddl_commodity.resources.profiles import cluster_limits

    c = cfg.cluster
    if not (c.profile or c.node_cpus or c.node_memory or c.master_cpus or c.master_memory):
        return {}
    worker, master, profile = cluster_limits(c.profile, c.node_cpus, c.node_memory, c.master_cpus, c.master_memory)
    d = profile.dilation if profile else None
    return {"cluster": {"profile": profile.name if profile else None, "dilation": d, "node_cpus": worker.cpus,
                        "node_memory": worker.memory, "master_cpus": master.cpus, "master_memory": master.memory,
                        "wall_cluster_seconds": round(wall_seconds * d, 2) if d else None}}


def monitoring_sections(run_dir: Path, title: str) -> dict:
    """For a run whose nodes were sampled: ``nodes/<node>.csv``, ``nodes.png`` and whole-run averages."""
    from ddl_commodity.artifacts.nodes import plot_node_metrics
    from ddl_commodity.monitor.metrics import node_averages, node_rows
    from ddl_commodity.monitor.sampler import write_node_csvs

    rows = node_rows(run_dir)
    if not rows:
        return {}
    write_node_csvs([r for rs in rows.values() for r in rs], run_dir / "nodes")
    for p in (run_dir / "nodes").glob("*.jsonl"):  # the CSVs hold the same rows, flat
        p.unlink()
    plot_node_metrics(rows, run_dir / "nodes.png", title=title)
    return {"node_averages": node_averages(rows), "net_method": next(iter(rows.values()))[0].get("net_method"),
            "plots": {"nodes": "nodes.png"}}
