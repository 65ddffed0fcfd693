"""What ``ddl plan`` prints and writes: one table row per scheme, the best placement in detail, the split
YAML, and everything as JSON next to it."""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from ddl_commodity.errors import UserInputError
from ddl_commodity.models.placement import BlockGraph
from ddl_commodity.planner.errors import PlanError, one_line, write_log
from ddl_commodity.planner.plan import Target
from ddl_commodity.planner.simulate import StepPrediction

if TYPE_CHECKING:
    from ddl_commodity.config import RunConfig
    from ddl_commodity.experiments.api import Experiment

GB = 2**30
MB = 1e6


def _order(nodes: set[str]) -> list[str]:
    return sorted(nodes, key=lambda n: (n.startswith("ps"), n))


def prediction_dict(p: StepPrediction, dilation: float | None) -> dict:
    nodes = _order(set(p.busy_s) | set(p.memory_bytes))
    return {
        "step_s": round(p.step_s, 5),
        "step_cluster_s": round(p.step_s * dilation, 5) if dilation else None,
        "nodes": {n: {"cpu_fraction": round(p.cpu_fraction(n), 4), "memory_bytes": p.memory_bytes.get(n, 0),
                      "rx_bytes": p.node_bytes(n)[0], "tx_bytes": p.node_bytes(n)[1]} for n in nodes},
        "links": {f"{a}->{b}": n for (a, b), n in sorted(p.links.items(), key=lambda kv: -kv[1])},
    }


class SchemeTable:
    """Rows of predictions with one CPU column per node of the target cluster."""

    def __init__(self, workers: int, dilation: float | None) -> None:
        self.nodes = [f"worker:{i}" for i in range(workers)] + ["ps:0"]
        self.dilation = dilation

    def header(self) -> str:
        cpu = " ".join(f"{n.replace('worker:', 'w'):>4s}" for n in self.nodes)
        return (f"  {'scheme':18s} {'figure':20s} {'step s':>7s} {'cluster s' if self.dilation else '':>9s}  "
                f"CPU % of share: {cpu}  {'GB max':>6s}  busiest link, MB/step")

    def line(self, name: str, figure: str, p: StepPrediction) -> str:
        cpu = " ".join(f"{100 * p.cpu_fraction(n):4.0f}" for n in self.nodes)
        (src, dst), busiest = max(p.links.items(), key=lambda kv: kv[1], default=(("-", "-"), 0))
        cluster = f"{p.step_s * self.dilation:9.3f}" if self.dilation else f"{'':9s}"
        return (f"  {name[:18]:18s} {figure[:20]:20s} {p.step_s:7.3f} {cluster}  {'':15s} {cpu}  "
                f"{max(p.memory_bytes.values()) / GB:6.2f}  {src}->{dst} {busiest / MB:.2f}")


def detail(blocks: dict[str, str], p: StepPrediction) -> list[str]:
    lines = [f"    {b:12s} -> {node}" for b, node in blocks.items()]
    for n in _order(set(p.busy_s) | set(p.memory_bytes)):
        rx, tx = p.node_bytes(n)
        lines.append(f"    {n:9s} CPU {100 * p.cpu_fraction(n):3.0f}% of its share, memory "
                     f"{p.memory_bytes.get(n, 0) / GB:.2f} GB, per step {rx / MB:.2f} MB in, {tx / MB:.2f} MB out")
    return lines


def run_plan(config: Path, profile: str | None, bandwidth: str | None, workers: int | None, latency_s: float,
             out: Path | None, refresh: bool) -> int:
    """``ddl plan``: print and write the predictions for ``config`` on the target cluster; exit code 0.

    Args:
        config: the experiment YAML; profile, bandwidth, workers, latency_s: the target cluster
            (:func:`~ddl_commodity.planner.plan.target_cluster`); out: where the split (model parallel) or the
            predictions (data parallel) go; refresh: profile the layers again.

    Raises:
        PlanError: one line for whatever stops the plan: a bad config, split or profile, a model that does not
            build or run; an unexpected exception's traceback goes to a log file the line names.
    """
    from ddl_commodity.planner.costs import CACHE_DIR

    try:
        return _plan(config, profile, bandwidth, workers, latency_s, out, refresh)
    except PlanError:
        raise
    except UserInputError as err:  # a config error lists its problems on lines of their own
        raise PlanError(one_line(str(err))) from None
    except Exception as err:
        log = write_log(CACHE_DIR / f"plan-{config.stem}.log", traceback.format_exc())
        raise PlanError(f"ddl plan {config}: {one_line(err)} (traceback: {log})") from err


def _plan(config: Path, profile: str | None, bandwidth: str | None, workers: int | None, latency_s: float,
          out: Path | None, refresh: bool) -> int:
    from ddl_commodity.experiments.registry import load
    from ddl_commodity.planner.costs import CACHE_DIR, layer_costs
    from ddl_commodity.planner.plan import target_cluster
    from ddl_commodity.planner.transport import transport_costs

    experiment, cfg = load(config)
    target_cluster(cfg, profile, bandwidth, workers, latency_s)  # a bad profile or rate fails before measuring
    graph, loss = _model_and_loss(experiment, cfg, config)
    t = cfg.training
    t0 = time.monotonic()
    transport = transport_costs(profile or cfg.cluster.profile or "none", CACHE_DIR, refresh=refresh)
    target = target_cluster(cfg, profile, bandwidth, workers, latency_s, transport)
    print(f"plan: {config} ({cfg.experiment}, batch {t.batch_size})\ncluster: {target.label}")
    costs = layer_costs(config, graph, t.batch_size, t.optimizer, loss, refresh=refresh)
    print(f"layer costs: one core, batch {t.batch_size}, loss {loss.split('{')[0]}: a whole step "
          f"{1000 * costs.step_s:.1f} ms; transport: {1000 * transport.remote_call_s:.2f} ms to dispatch a step "
          f"to a node, {1e6 * transport.send_s_per_tensor:.0f} us per tensor crossing, "
          f"{1e9 * transport.send_s_per_byte:.2f} / {1e9 * transport.recv_s_per_byte:.2f} ns CPU "
          f"per byte sent / received ({time.monotonic() - t0:.1f} s to get)")
    doc = {"config": str(config), "experiment": cfg.experiment, "batch": t.batch_size, "cluster": target.label,
           "costs": costs.to_dict(), "transport": transport.to_dict(), "latency_s": latency_s}
    json_path = (out or Path(f"{cfg.name}-split.yaml")).with_suffix(".json") if t.engine == "model_parallel" \
        else (out or Path(f"{cfg.name}-plan.json")).with_suffix(".json")
    if t.engine == "model_parallel":
        doc.update(_model_parallel(experiment, cfg, costs, target, config, profile, bandwidth, out))
    else:
        doc.update(_data_parallel(experiment, cfg, graph, costs, target, json_path.with_suffix(".png")))
    _write(json_path, json.dumps(doc, indent=1))
    print(f"predictions: {json_path}")
    return 0


def _model_and_loss(experiment: Experiment, cfg: RunConfig, config: Path) -> tuple[BlockGraph, str]:
    """The model's block graph and its loss (:func:`~ddl_commodity.planner.costs.describe_loss`), both from the
    user's code: a model or loss that does not build is a :class:`PlanError`."""
    from ddl_commodity.planner.costs import describe_loss

    try:
        return experiment.block_graph(cfg), describe_loss(experiment.loss(cfg))
    except Exception as err:
        raise PlanError(f"{config}: the model or loss of experiment {cfg.experiment} cannot be built: "
                        f"{one_line(err)}") from err


def _model_parallel(experiment, cfg, costs, target: Target, config: Path, profile, bandwidth, out) -> dict:
    from ddl_commodity.planner.plan import plan_model_parallel, split_yaml

    t0 = time.monotonic()
    rows, found = plan_model_parallel(experiment, cfg, costs, target)
    took = time.monotonic() - t0
    d = target.dilation
    table = SchemeTable(target.workers, d)
    print(table.header())
    for r in sorted(rows, key=lambda r: r.prediction.step_s):
        print(table.line(r.name, r.figure, r.prediction))
    print(table.line("planned", f"(= {found.kept})" if found.kept else "(search)", found.prediction))
    print(f"\nplanned split: {found.method}, {found.evaluated} placements predicted in {took:.1f} s")
    print("\n".join(detail(found.blocks, found.prediction)))
    how = " ".join(["ddl plan", str(config), *(["--profile", profile] if profile else []),
                    *(["--bandwidth", bandwidth] if bandwidth else []), f"--workers {target.workers}"])
    path = out or Path(f"{cfg.name}-split.yaml")
    _write(path, split_yaml(found, how, rows))
    print(f"written: {path} (use it with training.split: {path})")
    return {"schemes": {r.name: {"figure": r.figure, **prediction_dict(r.prediction, d)} for r in rows},
            "planned": {"blocks": found.blocks, "method": found.method, "kept": found.kept,
                        "evaluated": found.evaluated,
                        "seconds": round(took, 3), **prediction_dict(found.prediction, d)}}


def _data_parallel(experiment, cfg, graph: BlockGraph, costs, target: Target, plot: Path) -> dict:
    from ddl_commodity.planner.plan import data_parallel_task, feeding_efficiency
    from ddl_commodity.planner.scaling import break_even, scaling_curve

    weights = sum(total for _, total in graph.weights.values())
    shipped = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "feeding.json"
    t = cfg.training
    task = data_parallel_task(experiment, cfg, costs, weights, feeding_efficiency(shipped))
    curve = scaling_curve(task, target.cluster)
    best = break_even(curve)
    d = target.dilation
    print(f"data parallel, {t.data_distribution} data, {task.samples} training samples, {weights:,} weights "
          f"({weights * 4 / MB:.1f} MB per push), s = {cfg.ps.s}, feeding at {task.feed_efficiency:.2f} of an "
          f"in-memory loop (benchmark 1); target: {t.epochs} passes over the training set (training.epochs)")
    print(f"  {'workers':>7s} {'s/epoch':>8s} {'cluster s':>9s} {'compute':>8s} {'exchange':>8s} {'PS busy':>8s} "
          f"{'bound':>7s} {'to target s':>11s}")
    for m in sorted({1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, best, min(t.workers, 64)}):
        p = curve[m]
        cluster = f"{p.epoch_s * d:9.1f}" if d else f"{'':9s}"
        print(f"  {m:7d} {p.epoch_s:8.1f} {cluster} {p.compute_s:8.1f} {p.exchange_s:8.2f} {p.ps_busy_s:8.2f} "
              f"{p.bound:>7s} {p.time_to_target_s:11.1f}{'  <- break-even' if m == best else ''}")
    print(f"  -> break-even: {best} worker(s), {curve[best].time_to_target_s:.1f} s to the target against "
          f"{curve[1].time_to_target_s:.1f} s on one; beyond {best} the compute a PC takes off the others no "
          f"longer outweighs what its pushes ({weights * 4 / MB:.1f} MB each way) cost the PS")
    if t.data_distribution == "same":
        print("  note: with the same data every worker passes over the whole set, and the curve counts M workers' "
              "epochs as M passes: an upper bound on what they are worth (thesis Fig 5.4: 3 workers on the same "
              "data needed a quarter fewer epochs than 1, not two thirds)")
    node = target.label.split(", ", 1)[-1]  # the label without its worker count: the curve has them all
    _write_plot(curve, best, d, plot, f"{cfg.name}, {t.data_distribution} data, s = {cfg.ps.s}\n{node}")
    print(f"plot: {plot}")
    return {"data_parallel": {str(m): curve[m].to_dict() for m in range(1, 5)},
            "scaling": {str(m): p.to_dict() for m, p in curve.items()}, "break_even_workers": best,
            "feed_efficiency": task.feed_efficiency, "weights": weights,
            "samples": task.samples, "target_passes": task.target_passes}


def _write_plot(curve: dict, best: int, dilation: float | None, path: Path, title: str) -> None:
    """Seconds per epoch and to the target against M, the break-even marked: a PNG at ``path``."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale, unit = (dilation, "cluster s") if dilation else (1.0, "s")
    ms = sorted(curve)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(ms, [curve[m].time_to_target_s * scale for m in ms], label="time to the target")
    ax.plot(ms, [curve[m].epoch_s * scale for m in ms], label="one epoch (a worker's)", linestyle="--")
    ax.axvline(best, color="grey", linestyle=":", label=f"break-even: {best} workers")
    ax.set_xscale("log", base=2)
    ax.set_xticks([m for m in (1, 2, 4, 8, 16, 32, 64) if m <= ms[-1]])
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_yscale("log")
    ax.set_xlabel("workers M (PCs)")
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _write(path: Path, text: str) -> None:
    """Atomically: a crash leaves the old file or none, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
