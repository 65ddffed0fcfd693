"""``ddl plan``: predict every split scheme of a config's model on a cluster, find a better one, or, for a
data-parallel config, predict the seconds per epoch for 1 to 64 workers (:mod:`ddl_commodity.planner.scaling`).

The thesis's chapter 6 found its splits by trial and error (five schemes, an hour on the cluster each, read off
Ganglia plots); this answers the same questions before running anything, from the model's shapes (what
crosses each link, :mod:`ddl_commodity.models.splits`) and one-core timings of its layers
(:mod:`ddl_commodity.planner.costs`), through the step simulation of :mod:`ddl_commodity.planner.simulate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ddl_commodity.cluster.netns import TBF_BURST_S
from ddl_commodity.config import RunConfig
from ddl_commodity.errors import ConfigError, UserInputError
from ddl_commodity.experiments.api import Experiment
from ddl_commodity.models.splits import SplitScheme, available_schemes, load_scheme
from ddl_commodity.planner.costs import LayerCosts
from ddl_commodity.planner.errors import PlanError
from ddl_commodity.planner.scaling import DataParallelTask
from ddl_commodity.planner.search import Found, Problem, best_placement
from ddl_commodity.planner.simulate import ClusterModel, StepPrediction, predict_step
from ddl_commodity.planner.transport import FREE, TransportCosts
from ddl_commodity.resources.cgroups import PERIOD_US
from ddl_commodity.resources.profiles import load_profile, rate_bps

#: Without a profile or --bandwidth: the embedded cluster's loopback, in effect unlimited next to compute.
UNSHAPED_BPS = 10e9
#: The search's placement replaces the best shipped scheme only when predicted at least this much faster. The
#: cost model's step times err by 5-13% (median, benchmark 6 at 40 and 400 Mbit/s), so a placement predicted
#: faster by less than that may well run slower: within the model's error, the scheme that is known to work
#: is the better bet.
MIN_PREDICTED_GAIN = 0.15
#: What a node's daemons use while it computes nothing (executor JVM, TF server, heartbeats, the sampler):
#: measured 0.05 core on the thesis profile (the two idle workers of scheme `single`, benchmark 6).
IDLE_CORES = 0.05


@dataclass(frozen=True)
class Target:
    """The cluster a plan is for, in this machine's terms, and what to call it."""

    cluster: ClusterModel
    workers: int
    label: str
    dilation: float | None = None


def target_cluster(cfg: RunConfig, profile: str | None, bandwidth: str | None, workers: int | None,
                   latency_s: float, transport: TransportCosts = FREE) -> Target:
    """The profile's node share, memory and link (d x its rate), with ``bandwidth`` and ``workers`` overriding;
    ``transport``: the measured CPU costs of dispatch and transfers (:mod:`ddl_commodity.planner.transport`)."""
    name = profile or cfg.cluster.profile
    resolved = load_profile(name).resolve() if name else None
    share = resolved.worker.cpus if resolved else (cfg.cluster.node_cpus or 1.0)
    cap = resolved.worker.memory if resolved else None
    link = bandwidth or (resolved.bandwidth if resolved else None)
    bps = rate_bps(link) if link else UNSHAPED_BPS
    n = cfg.training.workers if workers is None else workers
    if not 1 <= n <= 16:
        raise UserInputError(f"--workers {n}: expected 1 to 16")
    if latency_s < 0:
        raise UserInputError(f"--latency-ms {latency_s * 1e3:g}: expected at least 0")
    where = f"profile {resolved.name}, d = {resolved.dilation:g}, " if resolved else ""
    label = f"{n} workers + PS, each node {share:g} core, links {bps / 1e6:g} Mbit/s ({where or 'no profile, '}" \
            f"memory cap {f'{cap / 2**30:.1f} GiB' if cap else 'none'})"
    quota = resolved is not None or cfg.cluster.node_cpus is not None  # nodes in groups with a CPU quota
    model = ClusterModel(cpu_share=share, bandwidth_bps=bps, latency_s=latency_s, memory_cap=cap,
                         idle_cores=IDLE_CORES, burst_s=TBF_BURST_S if link else 0.0, transport=transport,
                         cpu_period_s=PERIOD_US / 1e6 if quota else 0.0)
    return Target(model, n, label, resolved.dilation if resolved else None)


@dataclass
class SchemeRow:
    name: str
    figure: str
    prediction: StepPrediction


def thesis_schemes(experiment: Experiment, cfg: RunConfig, workers: int) -> list[SplitScheme]:
    """The shipped schemes that fit the model's blocks and ``workers`` workers."""
    block_map = experiment.blocks(cfg)
    out = []
    for name in available_schemes():
        try:
            scheme = load_scheme(name, block_map)
            scheme.check_cluster(workers)
        except ConfigError:
            continue
        out.append(scheme)
    return out


def predict_scheme(problem: Problem, scheme: SplitScheme) -> StepPrediction:
    return predict_step(problem.graph, problem.costs, scheme.layers, scheme.variables, scheme.input,
                        problem.cluster)


def plan_model_parallel(experiment: Experiment, cfg: RunConfig, costs: LayerCosts, target: Target,
                        ) -> tuple[list[SchemeRow], Found]:
    graph = experiment.block_graph(cfg)
    problem = Problem(graph, costs, experiment.blocks(cfg), target.workers, target.cluster)
    schemes = thesis_schemes(experiment, cfg, target.workers)
    own = experiment.scheme(cfg)  # the config's own split (a user's model has no thesis scheme that fits)
    if own.name not in {s.name for s in schemes} and _fits(own, target.workers):
        schemes.append(own)
    rows = [SchemeRow(s.name, s.figure or s.source, predict_scheme(problem, s)) for s in schemes]
    cap = target.cluster.memory_cap
    shipped = [(r, blocks) for r, s in zip(rows, schemes, strict=True)
               if (blocks := block_placement(s, problem.block_map)) is not None and r.prediction.fits(cap)]
    found = best_placement(problem)
    if not found.prediction.fits(cap):
        raise PlanError(f"no placement of the model's blocks on {target.workers} workers fits the nodes' memory "
                        f"cap of {cap / 2**30:.1f} GiB: more workers, a smaller batch or a profile with more memory")
    return rows, pick(found, shipped)


def block_placement(scheme: SplitScheme, block_map: dict[str, list[str]]) -> dict[str, str] | None:
    """``block -> node`` of a scheme that keeps each block's layers on one node; None if it splits a block."""
    out = {}
    for block, layers in block_map.items():
        nodes = {scheme.layers[layer] for layer in layers}
        if len(nodes) != 1:
            return None
        out[block] = nodes.pop()
    return out


def pick(found: Found, shipped: list[tuple[SchemeRow, dict[str, str]]]) -> Found:
    """The search's placement, or the best shipped scheme (with its block placement) when the search's is not
    predicted at least :data:`MIN_PREDICTED_GAIN` faster; ``method`` then says so, with both predictions."""
    if not shipped:
        return found
    row, blocks = min(shipped, key=lambda c: c[0].prediction.step_s)
    gain = 1.0 - found.prediction.step_s / row.prediction.step_s
    if gain >= MIN_PREDICTED_GAIN:
        return found
    why = (f"{found.method}; its best placement ({found.prediction.step_s:.3f} s/step) is predicted only "
           f"{max(gain, 0.0):.0%} faster than the shipped scheme {row.name} ({row.prediction.step_s:.3f} s), "
           f"within the cost model's error (a gain of {MIN_PREDICTED_GAIN:.0%} is asked): {row.name} kept")
    return Found(blocks, row.prediction, why, found.evaluated, kept=row.name)


def _fits(scheme: SplitScheme, workers: int) -> bool:
    try:
        scheme.check_cluster(workers)
    except ConfigError:
        return False
    return True


def split_yaml(found: Found, how: str, rows: list[SchemeRow]) -> str:
    """The best placement in the ``configs/splits/`` format, with a comment saying how it was found."""
    import yaml

    best_thesis = min(rows, key=lambda r: r.prediction.step_s) if rows else None
    vs = (f"; the best shipped scheme, {best_thesis.name}, {best_thesis.prediction.step_s:.3f} s"
          if best_thesis else "")
    doc = {"name": "planned", "figure": "", "description": f"found by ddl plan: {found.method}",
           "variables": "ps:0", "input": "worker:0", "placement": found.blocks}
    head = (f"# Found by `{how}`:\n# {found.method}, {found.evaluated} placements predicted; predicted step "
            f"{found.prediction.step_s:.3f} s{vs}.\n")
    return head + yaml.safe_dump(doc, sort_keys=False)


def data_parallel_task(experiment: Experiment, cfg: RunConfig, costs: LayerCosts, weights: int,
                       feed_efficiency: float) -> DataParallelTask:
    """The data-parallel run ``cfg`` describes, for :mod:`~ddl_commodity.planner.scaling`: its training and
    held-out sets (the data are read or generated), batch, ``s``, pushes, and ``training.epochs`` as the
    passes to the target."""
    from ddl_commodity.engines.scoring import EVAL_BATCH

    data = experiment.dataset(cfg, progress=False)
    t = cfg.training
    return DataParallelTask(
        step_s=costs.step_s, weights=weights, samples=len(data.train_index), batch=t.batch_size,
        distribution=t.data_distribution, s=cfg.ps.s, push_every_steps=t.push_every_steps,
        feed_efficiency=feed_efficiency, target_passes=float(t.epochs),
        validation_samples=len(data.validation_index), eval_step_s=costs.eval_s, eval_batch=EVAL_BATCH)


def feeding_efficiency(results: Path) -> float:
    """``ratio_spark_bundles_to_in_memory`` of the feeding benchmark's shipped result (1.0 without one)."""
    import json

    try:
        return float(json.loads(results.read_text())["ratio_spark_bundles_to_in_memory"])
    except (OSError, ValueError, KeyError, TypeError):
        return 1.0
