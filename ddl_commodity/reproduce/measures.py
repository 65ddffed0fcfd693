"""The quantities the claims of :mod:`~ddl_commodity.reproduce.claims` are judged on, from run summaries.

A measure is ``fn(summaries, **params) -> Measured`` (registered in :data:`MEASURES` by name, so that a claim
names it as data) or raises :class:`NotTestable` with the reason. Summaries are keyed by run name
(:mod:`~ddl_commodity.reproduce.runsets`); a seeded repetition of a cell (``-seed<k>``) gives the measure one more
value. Besides ``summary.json`` a summary may hold what :func:`ddl_commodity.reproduce.report.load` adds from the
run directory: ``epoch_curves`` (per worker, per epoch: loss, accuracy, seconds) and ``node_series`` (per node,
per sample: CPU %, CPU wait %, memory MB, MB/s in and out; :func:`ddl_commodity.artifacts.nodes.node_series`).

Land-cover nodes are named by their role in the split scheme (Fig 6.3): ``ps``, ``rgb`` (the VHR-RGB branch's
worker), ``merging`` (the worker of the merging layers) and ``hsi`` (the third worker; thesis "worker 3").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from ddl_commodity.artifacts.early_stopping import epochs_to_plateau
from ddl_commodity.monitor.cpu_wait import wait_columns
from ddl_commodity.reproduce.runsets import config_and_seed, redshift_run

PLATEAU = "accuracy/patience=1/min_delta=0.001"
LENIENT = "accuracy/patience=3/min_delta=0.0001"
MB = 1e6
OLD_WAIT = ("its CPU wait was recorded as the run-queue delay summed over threads (not 0-100) and the raw per-thread "
            "counters were not kept, so it cannot be recomputed; a rerun measures it")
NO_CURVES = "kept no per-epoch curves (only summary.json was kept, which has the final epoch's)"


class NotTestable(Exception):
    """The runs at hand cannot test the claim; the message says why."""


@dataclass(frozen=True)
class Measured:
    """What a measure found.

    Args:
        values: one per seed: a number, or ``{name: number}`` for the orderings.
        seeds: the seed of each value (``seed 1``...); one entry for an unseeded measure.
        why: the numbers behind the values, in words.
    """

    values: list
    seeds: list[str]
    why: str


def _run(summaries: dict[str, dict], name: str) -> dict:
    if name not in summaries:
        raise NotTestable(f"the run {name} is not in this reproduction")
    return summaries[name]


def seed_sets(summaries: dict[str, dict], names: tuple[str, ...]) -> list[tuple[str, dict[str, dict]]]:
    """Per seed, the summaries of ``names`` (a name without repetitions stands in for every seed); a seed is
    left out when a name that has repetitions lacks it. Raises NotTestable when a name has no run at all."""
    for name in names:
        _run(summaries, name)
    seeds = sorted({seed for n in summaries for cfg, seed in [config_and_seed(n)] if seed and cfg in names})
    out = [("seed 1", {n: summaries[n] for n in names})]
    for k in seeds:
        pick = {}
        for n in names:
            seeded = any(config_and_seed(m) == (n, s) for m in summaries for s in seeds)
            pick[n] = summaries.get(f"{n}-seed{k}") if seeded else summaries[n]
        if all(pick.values()):
            out.append((f"seed {k}", pick))
    return out


def _measured(per_seed: list[tuple[str, object, str]]) -> Measured:
    return Measured([v for _, v, _ in per_seed], [s for s, _, _ in per_seed],
                    "; ".join(f"{s}: {w}" if len(per_seed) > 1 else w for s, _, w in per_seed))


# ---- land cover: nodes by role ----------------------------------------------------------------------------

def roles(s: dict) -> dict[str, str]:
    """``{role: node}``: ``ps``, and for a split scheme ``rgb``, ``merging`` and ``hsi`` (module docstring)."""
    nodes = sorted(s.get("node_averages") or s.get("nodes") or {})
    out = {"ps": n for n in nodes if n.startswith("ps")}  # noqa: B035 (one PS)
    layers = s.get("scheme", {}).get("layers")
    if layers and "rgb_conv1" in layers and "merge_concat" in layers:
        rgb, merging = (layers[k].replace(":", "-") for k in ("rgb_conv1", "merge_concat"))
        out.update(rgb=rgb, merging=merging)
        rest = [n for n in nodes if n.startswith("worker") and n not in (rgb, merging)]
        if len(rest) == 1:
            out["hsi"] = rest[0]
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _present(*values: float | None) -> float | None:
    """The first value that was measured (a measured 0.0 included)."""
    return next((v for v in values if v is not None), None)


def node_value(s: dict, node: str, metric: str) -> float:
    """One node's figure: ``cpu`` (mean % of its share), ``cpu_peak`` (90th percentile of its samples, else the
    maximum), ``memory`` (peak MB: its group, else RSS), ``rx`` / ``tx`` / ``traffic`` (MB/s in the steady
    window, else over the run), ``wait_peak`` (95th percentile of CPU wait, else the maximum), ``wait_median``
    (median CPU wait, else the mean)."""
    a = s.get("node_averages", {}).get(node) or {}
    step = s.get("nodes", {}).get(node) or {}
    series = s.get("node_series", {}).get(node)
    if metric in ("rx", "tx"):
        v = _present(step.get(f"{metric}_mb_per_s"), a.get(f"{metric}_mb_per_s"))
    elif metric == "traffic":
        v = node_value(s, node, "rx") + node_value(s, node, "tx")
    elif metric == "cpu":
        v = a.get("cpu_percent_mean")
    elif metric == "cpu_peak":
        v = _percentile(series["cpu"], 90) if series else a.get("cpu_percent_max")
    elif metric == "memory":
        v = _present(a.get("memory_mb_max"), a.get("rss_mb_max"))
    elif metric in ("wait_peak", "wait_median"):
        waits = [w for w in (series or {}).get("wait", []) if w is not None]
        mean, peak, _ = wait_columns(a)
        v = (_percentile(waits, 95 if metric == "wait_peak" else 50) if waits
             else peak if metric == "wait_peak" else mean)
        if v is None:
            raise NotTestable(f"{s.get('name', 'a run')}: {OLD_WAIT}")
    else:
        raise ValueError(f"unknown node metric {metric!r}")
    if v is None:
        raise NotTestable(f"{s.get('name', 'a run')} recorded no {metric} for {node}")
    return float(v)


def _pick(s: dict, who: str | tuple[str, ...]) -> dict[str, str]:
    """``{label: node}``: ``all`` nodes, ``workers``, or the given roles; a node with a role is labelled by it."""
    by_role = roles(s)
    if isinstance(who, tuple):
        missing = [r for r in who if r not in by_role]
        if missing:
            raise NotTestable(f"{s.get('name')}: no node in the role of {', '.join(missing)}")
        return {r: by_role[r] for r in who}
    label = {n: r for r, n in by_role.items()}
    nodes = sorted(s.get("node_averages") or s.get("nodes") or {})
    if not nodes:
        raise NotTestable(f"{s.get('name')} has no per-node samples")
    return {label.get(n, n): n for n in nodes if who == "all" or n.startswith("worker")}


def node_values(summaries: dict[str, dict], run: str, metric: str, who: str | tuple[str, ...] = "all") -> Measured:
    """``{node: metric}`` of one run (an ordering of its nodes)."""
    s = _run(summaries, run)
    values = {label: node_value(s, node, metric) for label, node in _pick(s, who).items()}
    why = f"{run}, {metric}: " + ", ".join(f"{k} {_num(v)}" for k, v in values.items())
    if s.get("ps_updates") and metric in ("rx", "tx", "traffic"):
        why += (f"; the PS applied {s['ps_updates']} updates in {s.get('wall_seconds', 0):.0f} s (a worker pushes "
                "once per epoch); a node's traffic counts every TCP byte of its processes, Spark's included")
    return Measured([values], ["seed 1"], why)


_REDUCE: dict[str, Callable[[dict[str, float]], float]] = {
    "mean": lambda v: statistics.mean(v.values()), "sum": lambda v: sum(v.values()),
    "spread": lambda v: (max(v.values()) - min(v.values())) / max(statistics.mean(v.values()), 1e-9),
    "ps_merging_share": lambda v: (v["ps"] + v["merging"]) / max(sum(v.values()), 1e-9),
}


def run_values(summaries: dict[str, dict], runs: dict[str, str], metric: str, who: str | tuple[str, ...] = "all",
               reduce: str = "mean") -> Measured:
    """``{label: reduce(metric over the nodes)}`` of several runs (an ordering of runs)."""
    values, why = {}, []
    for label, run in runs.items():
        s = _run(summaries, run)
        per = {k: node_value(s, n, metric) for k, n in _pick(s, who).items()}
        values[label] = _REDUCE[reduce](per)
        why.append(f"{label} ({run}): " + ", ".join(f"{k} {_num(v)}" for k, v in per.items())
                   + f" -> {reduce} {_num(values[label])}")
    return Measured([values], ["seed 1"], f"{metric}; " + "; ".join(why))


def ratio(summaries: dict[str, dict], num: str, den: str, metric: str, who: str | tuple[str, ...] = "all",
          reduce: str = "mean", floor: float = 0.0) -> Measured:
    """reduce(metric) of run ``num`` / that of run ``den`` (the denominator at least ``floor``)."""
    m = run_values(summaries, {num: num, den: den}, metric, who, reduce)
    a, b = m.values[0][num], m.values[0][den]
    return Measured([a / max(b, floor, 1e-9)], ["seed 1"], m.why)


def relative_difference(summaries: dict[str, dict], a: str, b: str, metric: str,
                        who: str | tuple[str, ...] = "all") -> Measured:
    """The largest |x_a / x_b - 1| in % over the nodes of ``who`` (matched by label) of runs ``a`` and ``b``."""
    sa, sb = _run(summaries, a), _run(summaries, b)
    pa, pb = _pick(sa, who), _pick(sb, who)
    diffs = {k: 100 * abs(node_value(sa, pa[k], metric) / max(node_value(sb, pb[k], metric), 1e-9) - 1)
             for k in pa if k in pb}
    if not diffs:
        raise NotTestable(f"{a} and {b} share no node")
    why = ", ".join(f"{k} {_num(node_value(sa, pa[k], metric))} vs {_num(node_value(sb, pb[k], metric))} "
                    f"({d:.0f}%)" for k, d in diffs.items())
    return Measured([max(diffs.values())], ["seed 1"], f"{metric}, {a} vs {b}: {why}")


def final_metric(summaries: dict[str, dict], runs: dict[str, str], key: str) -> Measured:
    """``{label: the final model's key, %}`` of several runs (``summary.final``)."""
    values = {}
    for label, run in runs.items():
        v = _run(summaries, run).get("final", {}).get(key)
        if v is None:
            raise NotTestable(f"{run} recorded no final {key}")
        values[label] = 100 * v
    return Measured([values], ["seed 1"], f"final {key}: " + ", ".join(f"{k} ({runs[k]}) {v:.1f}%"
                                                                     for k, v in values.items()))


def training_speed(summaries: dict[str, dict], runs: dict[str, str]) -> Measured:
    """``{label: seconds per 1,000 training samples}`` of model-parallel runs (their steady step time / batch)."""
    values, why = {}, []
    for label, run in runs.items():
        s = _run(summaries, run)
        steps = [n["seconds_per_step"] for n in s.get("nodes", {}).values() if n.get("seconds_per_step")]
        batch = s.get("boundary_bytes_per_step", {}).get("batch")
        if not steps or not batch:
            raise NotTestable(f"{run} recorded no steady step time")
        values[label] = 1000 * statistics.median(steps) / batch
        why.append(f"{label}: {statistics.median(steps):.3f} s/step at batch {batch} -> {values[label]:.2f} s")
    return Measured([values], ["seed 1"], "seconds per 1,000 samples; " + "; ".join(why))


def _cluster_rx(s: dict) -> float:
    return sum(n.get("rx_mb_per_s") or 0.0 for n in s.get("nodes", {}).values())


def batch_traffic(summaries: dict[str, dict]) -> Measured:
    """``{batch: cluster MB/s in at batch 10 / at that batch}`` for batches 50 and 200 (Fig 6.5), with the
    bytes per step from the shapes over the measured seconds per step behind it."""
    runs = {b: _run(summaries, f"landcover-batch{b}") for b in (10, 50, 200)}
    if min(_cluster_rx(runs[50]), _cluster_rx(runs[200])) <= 0:
        raise NotTestable("the batch runs recorded no steady traffic")
    values = {f"batch {b}": _cluster_rx(runs[10]) / _cluster_rx(runs[b]) for b in (50, 200)}
    parts = []
    for b, s in runs.items():
        computed = sum(n["rx_bytes"] for n in s.get("boundary_bytes_per_step", {}).get("per_node", {}).values()) / MB
        steps = [n["seconds_per_step"] for n in s.get("nodes", {}).values() if n.get("seconds_per_step")]
        sec = statistics.median(steps) if steps else float("nan")
        parts.append(f"batch {b}: {computed:.2f} MB/step from the shapes, {sec:.3f} s/step -> {computed / sec:.1f} "
                     f"MB/s (measured {_cluster_rx(s):.1f})")
    why = ("cluster MB/s in at batch 10 over that at 50 and 200; traffic per second = bytes per step / seconds per "
           "step; bytes per step are the PS's weights (the same at every batch) plus activations and their "
           "gradients (proportional to the batch). " + "; ".join(parts))
    return Measured([values], ["seed 1"], why)


def traffic_drop(summaries: dict[str, dict], batches: tuple[int, ...] = (10, 50)) -> Measured:
    """``{batch: cluster MB/s in over the last third of the training traffic / over its first third}`` (Fig 6.5's
    drop); the traffic spans from the first to the last sample above a tenth of the cluster's peak, so that
    start-up and shut-down do not count."""
    values, why = {}, []
    for b in batches:
        s = _run(summaries, f"landcover-batch{b}")
        series = s.get("node_series")
        if not series:
            raise NotTestable(f"landcover-batch{b} kept no traffic over time (only its whole-run means)")
        n = min(len(ser["t"]) for ser in series.values())
        t = next(iter(series.values()))["t"][:n]
        total = [sum(ser["rx"][i] for ser in series.values()) for i in range(n)]
        active = [i for i, v in enumerate(total) if v > 0.1 * max(total)]
        if len(active) < 3:
            raise NotTestable(f"landcover-batch{b} has fewer than 3 samples of traffic")
        lo, hi = t[active[0]], t[active[-1]]
        third = (hi - lo) / 3
        first, last = (_cluster_rate(series, start, start + third) for start in (lo, hi - third))
        values[f"batch {b}"] = last / max(first, 1e-9)
        why.append(f"batch {b}: {first:.1f} MB/s in the first third of its {hi - lo:.0f} s of traffic, "
                   f"{last:.1f} in the last")
    return Measured([values], ["seed 1"], "; ".join(why))


def _cluster_rate(series: dict[str, dict], lo: float, hi: float) -> float:
    """The cluster's mean MB/s in between seconds ``lo`` and ``hi`` of its node series."""
    return sum(statistics.mean([r for t, r in zip(n["t"], n["rx"], strict=True) if lo <= t <= hi] or [0.0])
               for n in series.values())


def merging_out(summaries: dict[str, dict], baseline: str) -> Measured:
    """The merging worker's MB/s out, default scheme (the run ``baseline``) / Fig 6.7 scheme, with the tensors
    it sends."""
    default, f67 = _run(summaries, baseline), _run(summaries, "landcover-fig6_7")
    rates = [node_value(s, roles(s)["merging"], "tx") for s in (default, f67)]
    why = [f"{rates[0]:.1f} -> {rates[1]:.1f} MB/s"]
    for label, s in (("default", default), ("Fig 6.7", f67)):
        node = roles(s)["merging"]
        task = node.replace("-", ":")
        crossings = s.get("boundary_bytes_per_step", {}).get("crossings", [])
        sent = [f"{c['tensor']} -> {c['target']} {_size(c['forward_bytes'])}" for c in crossings if c["source"] == task]
        sent += [f"gradient of {c['tensor']} -> {c['source']} {_size(c['backward_bytes'])}" for c in crossings
                 if c["target"] == task and c["backward_bytes"]]
        n = s["nodes"][node]
        computed = s.get("boundary_bytes_per_step", {}).get("per_node", {}).get(task, {}).get("tx_bytes", 0)
        why.append(f"{label}: {node} sends {_size(n['tx_bytes_per_step'])}/step measured, {_size(computed)} from the "
                   f"shapes ({', '.join(sent) or 'no activations'}, plus its weights to the PS) in "
                   f"{n['seconds_per_step']:.3f} s/step")
    return Measured([rates[0] / rates[1]], ["seed 1"], "; ".join(why))


def parallel_vs_data(summaries: dict[str, dict], size: str, metric: str) -> Measured:
    """``{model parallel, data parallel}``: the workers' mean CPU % or memory MB, with where it went."""
    mp, dp = f"landcover-default-{size}", f"landcover-dp-{size}"
    m = run_values(summaries, {"model parallel": mp, "data parallel": dp}, metric, "workers")
    key = "cpu_seconds_by_part" if metric == "cpu" else "pss_mb_max_by_part"
    said = []
    for label, run in (("model parallel", mp), ("data parallel", dp)):
        parts = [a[key] for n, a in summaries[run].get("node_averages", {}).items()
                 if n.startswith("worker") and a.get(key)]
        if parts:
            total = {k: sum(p.get(k, 0.0) for p in parts) / (len(parts) if metric != "cpu" else 1)
                     for k in sorted({k for p in parts for k in p})}
            ranked = sorted(total.items(), key=lambda kv: -kv[1])
            said.append(f"{label} " + ", ".join(f"{k} {v:.0f}" for k, v in ranked))
    unit = "CPU seconds, all workers" if metric == "cpu" else "peak proportional MB, mean worker"
    return Measured(m.values, m.seeds, m.why + (f"; where it went ({unit}): " + "; ".join(said) if said else ""))


# ---- redshift: curves and plateaus ------------------------------------------------------------------------

def _curves(s: dict) -> dict[str, list[dict]]:
    curves = s.get("epoch_curves")
    if not curves:
        raise NotTestable(f"{s.get('name', 'a run')} {NO_CURVES}")
    return curves


def _mean_curve(s: dict, key: str) -> list[float]:
    """The workers' mean of ``key`` per epoch, over the epochs every worker ran."""
    curves = list(_curves(s).values())
    n = min(len(c) for c in curves)
    return [statistics.mean(c[i][key] for c in curves) for i in range(n)]


def _spread_curve(s: dict, key: str) -> float:
    """Mean over epochs of the workers' range of ``key``; for losses relative to the workers' mean loss at
    epoch 1, the scale a plot of the curves has (relative to each epoch's own mean, the near-zero losses of the
    late epochs would make noise of a thousandth look like a difference of 100%)."""
    curves = list(_curves(s).values())
    n = min(len(c) for c in curves)
    scale = statistics.mean(c[0][key] for c in curves) if key == "loss" else 1.0
    spans = [max(c[i][key] for c in curves) - min(c[i][key] for c in curves) for i in range(n)]
    return statistics.mean(spans) / max(scale, 1e-12)


def _learning_epochs(runs: dict[str, dict], one: str) -> int:
    """The epochs in which the curves can differ: up to the 1-worker run ``one``'s plateau (strict criterion,
    median over its workers). Past it every curve sits near 100% and a mean over all epochs dilutes a gap."""
    return max(1, math.ceil(_plateau_median(runs[one], one, PLATEAU)))


def _mean_accuracy(runs: dict[str, dict], name: str, epochs: int) -> float:
    """The workers' mean training accuracy over the first ``epochs`` epochs of run ``name``."""
    return statistics.mean(_mean_curve(runs[name], "accuracy")[:epochs])


def accuracy_gains(summaries: dict[str, dict], cases: tuple[str, ...]) -> Measured:
    """``{case: mean training accuracy over the epochs until 1 worker's plateau, more workers minus 1 worker,
    points}``; a case is ``size/dist/workers`` (``5k/same/3w``)."""
    per_seed = []
    names = tuple(n for c in cases for n in (redshift_run(*c.split("/")), redshift_run(*c.split("/")[:2], "1w")))
    for seed, runs in seed_sets(summaries, tuple(dict.fromkeys(names))):
        values, windows = {}, {}
        for case in cases:
            size, dist, w = case.split("/")
            n = _learning_epochs(runs, redshift_run(size, dist, "1w"))
            more, one = (_mean_accuracy(runs, redshift_run(size, dist, k), n) for k in (w, "1w"))
            values[case] = 100 * (more - one)
            windows[case] = n
        per_seed.append((seed, values, ", ".join(f"{k} {v:+.1f} (epochs 1-{windows[k]})" for k, v in values.items())))
    m = _measured(per_seed)
    return Measured(m.values, m.seeds, "mean accuracy until 1 worker's plateau, minus 1 worker's (points): " + m.why)


def size_gains(summaries: dict[str, dict], cells: tuple[str, ...]) -> Measured:
    """``{cell: mean training accuracy over the epochs with 15K spectra minus with 5K, points}``; a cell is
    ``dist/workers`` (``same/3w``) or ``single``."""
    def name(size: str, cell: str) -> str:
        return redshift_run(size, "same", "single") if cell == "single" else redshift_run(size, *cell.split("/"))

    per_seed = []
    for seed, runs in seed_sets(summaries, tuple(name(z, c) for c in cells for z in ("5k", "15k"))):
        values = {c: 100 * (statistics.mean(_mean_curve(runs[name("15k", c)], "accuracy"))
                            - statistics.mean(_mean_curve(runs[name("5k", c)], "accuracy"))) for c in cells}
        per_seed.append((seed, values, ", ".join(f"{k} {v:+.1f} points" for k, v in values.items())))
    return _measured(per_seed)


def wall_time(summaries: dict[str, dict], runs: dict[str, str]) -> Measured:
    """``{label: the run's wall seconds}`` of runs of the same work (an ordering of runs)."""
    values = {label: float(_run(summaries, run)["wall_seconds"]) for label, run in runs.items()}
    return Measured([values], ["seed 1"], ", ".join(f"{k} ({runs[k]}) {v:.0f} s" for k, v in values.items()))


def accuracy_gap(summaries: dict[str, dict], size: str, dist: str, a: str, b: str) -> Measured:
    """|mean training accuracy of cell a - of cell b| over the epochs until 1 worker's plateau, in points."""
    per_seed = []
    one = redshift_run(size, dist, "1w")
    for seed, runs in seed_sets(summaries, tuple(dict.fromkeys((redshift_run(size, dist, a),
                                                                redshift_run(size, dist, b), one)))):
        n = _learning_epochs(runs, one)
        x, y = (_mean_accuracy(runs, redshift_run(size, dist, k), n) for k in (a, b))
        per_seed.append((seed, 100 * abs(x - y), f"{a} {100 * x:.1f}%, {b} {100 * y:.1f}% (epochs 1-{n})"))
    return _measured(per_seed)


def spread_ratio(summaries: dict[str, dict], key: str, num: tuple[str, ...], den: tuple[str, ...]) -> Measured:
    """Mean workers' spread of ``key`` (accuracy points, or loss relative to the epoch-1 loss) over the cells ``num``
    (``size/dist/workers``) / that over the cells ``den``."""
    names = tuple(redshift_run(*c.split("/")) for c in (*num, *den))
    per_seed = []
    for seed, runs in seed_sets(summaries, tuple(dict.fromkeys(names))):
        a, b = (statistics.mean(_spread_curve(runs[redshift_run(*c.split("/"))], key) for c in cells)
                for cells in (num, den))
        per_seed.append((seed, a / max(b, 1e-9), f"spread {a:.3f} vs {b:.3f}"))
    m = _measured(per_seed)
    return Measured(m.values, m.seeds, f"workers' spread of {key} per epoch, {', '.join(num)} vs {', '.join(den)}: "
                    + m.why)


def worker_spread(summaries: dict[str, dict], key: str, cells: tuple[str, ...]) -> Measured:
    """Mean workers' spread of ``key`` per epoch over the cells (``size/dist/workers``): accuracy points, or
    loss relative to the workers' mean loss at epoch 1."""
    names = tuple(redshift_run(*c.split("/")) for c in cells)
    per_seed = []
    for seed, runs in seed_sets(summaries, names):
        v = statistics.mean(_spread_curve(runs[n], key) for n in names)
        per_seed.append((seed, v, f"{v:.3f}"))
    m = _measured(per_seed)
    return Measured(m.values, m.seeds, f"workers' spread of {key} per epoch over {', '.join(cells)}: " + m.why)


def epochs_to_reach(summaries: dict[str, dict], size: str, dist: str, workers: str,
                    level: float | None = None) -> Measured:
    """The first epoch at which the cell's mean training accuracy reaches ``level`` (default: the sequential
    CNN's accuracy at epoch 3); past the run's end counts as its epochs + 1."""
    cell, single = redshift_run(size, dist, workers), redshift_run(size, dist, "single")
    per_seed = []
    for seed, runs in seed_sets(summaries, tuple(dict.fromkeys((cell, single)))):
        epoch, target, within = _reach_epoch(runs, cell, single, level)
        per_seed.append((seed, float(epoch), f"{cell} reaches {100 * target:.1f}% at epoch {epoch}"
                         + ("" if within else " (not within the run)")))
    return _measured(per_seed)


def _reach_epoch(runs: dict[str, dict], cell: str, single: str, level: float | None) -> tuple[int, float, bool]:
    """(epoch, the accuracy it reaches, whether within the run) of :func:`epochs_to_reach` for one seed."""
    target = level if level is not None else _mean_curve(runs[single], "accuracy")[2]
    curve = _mean_curve(runs[cell], "accuracy")
    epoch = next((i + 1 for i, v in enumerate(curve) if v >= target), len(curve) + 1)
    return epoch, target, epoch <= len(curve)


def reach_ratio(summaries: dict[str, dict], size: str, dist: str, level: float | None = None) -> Measured:
    """Epochs 1 worker needs to reach ``level`` (default: the sequential CNN's epoch-3 accuracy) / epochs 3
    workers need, per seed (the three runs of one seed together)."""
    single, one, three = (redshift_run(size, dist, w) for w in ("single", "1w", "3w"))
    per_seed = []
    for seed, runs in seed_sets(summaries, (single, one, three)):
        a, b = (_reach_epoch(runs, cell, single, level)[0] for cell in (one, three))
        per_seed.append((seed, a / b, f"1 worker epoch {a}, 3 workers epoch {b}"))
    return _measured(per_seed)


def time_to_plateau(s: dict, criterion: str = PLATEAU) -> tuple[float, float, float] | None:
    """(seconds, epochs, seconds per epoch) to the run's plateau: the median over its workers of the epochs to
    theirs (as Tables 5.1 and 5.2 list every worker's; one that never plateaued counts as the run's epochs + 1),
    times the run's seconds per epoch; None when no worker plateaued."""
    per = s.get("epochs_to_plateau", {}).get(criterion, {})
    if not any(e is not None for e in per.values()):
        return None
    epochs = _plateau_median(s, s.get("name", "a run"), criterion)
    per_epoch = s["wall_seconds"] / max(max(w["epochs"] for w in s["workers"].values()), 1)
    return epochs * per_epoch, epochs, per_epoch


def _epoch_split(s: dict) -> str:
    """Where a mean epoch of the run's workers went (training, waiting at the PS, the rest)."""
    workers = [w for w in s.get("workers", {}).values() if w.get("epoch_seconds_mean") is not None]
    if not workers or any(w.get("train_seconds_mean") is None for w in workers):
        return ""
    epoch, train, sync = (statistics.mean(w.get(k) or 0.0 for w in workers)
                          for k in ("epoch_seconds_mean", "train_seconds_mean", "sync_seconds_mean"))
    return (f"; a worker's epoch {epoch:.1f} s: training {train:.1f}, at the PS {sync:.1f}, "
            f"the rest {max(epoch - train - sync, 0.0):.1f}")


def plateau_reduction(summaries: dict[str, dict], size: str, dist: str, by: str, criterion: str = PLATEAU,
                      fewer: str = "1w", more: str = "3w") -> Measured:
    """% less to the plateau (median over the workers), ``more`` workers vs ``fewer`` (or the single machine): ``by``
    ``epochs`` (what Fig 5.4 counts) or ``seconds`` (what its words say: epochs x the run's seconds per epoch)."""
    a, b = redshift_run(size, dist, fewer), redshift_run(size, dist, more)
    per_seed = []
    for seed, runs in seed_sets(summaries, (a, b)):
        ta, tb = time_to_plateau(runs[a], criterion), time_to_plateau(runs[b], criterion)
        if not (ta and tb):
            continue
        idx = 1 if by == "epochs" else 0
        per_seed.append((seed, 100.0 * (1 - tb[idx] / ta[idx]),
                         f"{fewer} epoch {ta[1]:g} x {ta[2]:.1f} s = {ta[0]:.0f} s{_epoch_split(runs[a])}; "
                         f"{more} epoch {tb[1]:g} x {tb[2]:.1f} s = {tb[0]:.0f} s{_epoch_split(runs[b])}"))
    if not per_seed:
        raise NotTestable(f"no pair of {a} and {b} runs plateaued ({criterion})")
    return _measured(per_seed)


def plateau_epochs(summaries: dict[str, dict], size: str, dist: str, criterion: str,
                   cells: tuple[str, ...] = ("1w", "2w", "3w")) -> Measured:
    """``{cell: median epochs to plateau over its workers}`` (a worker that never plateaued counts as the
    run's epochs + 1)."""
    names = tuple(redshift_run(size, dist, c) for c in cells)
    per_seed = []
    for seed, runs in seed_sets(summaries, names):
        values = {c: _plateau_median(runs[n], n, criterion) for c, n in zip(cells, names, strict=True)}
        per_seed.append((seed, values, ", ".join(f"{k} {v:g}" for k, v in values.items())))
    return _measured(per_seed)


def _plateau_median(s: dict, name: str, criterion: str) -> float:
    """Median over a run's workers of the epochs to their plateau (never: the run's epochs + 1)."""
    per = s.get("epochs_to_plateau", {}).get(criterion, {})
    if not per:
        raise NotTestable(f"{name} recorded no {criterion} plateau")
    epochs = max(w["epochs"] for w in s["workers"].values())
    return float(statistics.median(e if e is not None else epochs + 1 for e in per.values()))


def plateau_fewer(summaries: dict[str, dict], size: str) -> Measured:
    """``{"<dist> data, <criterion>": epochs to plateau of 1 worker - of 3 workers}`` (medians over the workers)
    for both distributions and both early-stopping criteria of Tables 5.1 and 5.2, with 2 workers' beside."""
    per_seed = []
    names = tuple(redshift_run(size, d, w) for d in ("same", "disjoint") for w in ("1w", "2w", "3w"))
    for seed, runs in seed_sets(summaries, names):
        values, said = {}, []
        for dist in ("same", "disjoint"):
            for label, criterion in (("strict", PLATEAU), ("lenient", LENIENT)):
                e = [_plateau_median(runs[redshift_run(size, dist, w)], redshift_run(size, dist, w), criterion)
                     for w in ("1w", "2w", "3w")]
                values[f"{dist} data, {label}"] = e[0] - e[2]
                said.append(f"{dist} {label} {'/'.join(f'{x:g}' for x in e)}")
        per_seed.append((seed, values, "epochs of 1/2/3 workers: " + ", ".join(said)))
    return _measured(per_seed)


def plateau_difference(summaries: dict[str, dict], size: str, dist: str, criterion: str, a: str,
                       b: str) -> Measured:
    """Epochs to plateau (median over workers) of cell ``a`` minus that of cell ``b``."""
    m = plateau_epochs(summaries, size, dist, criterion, (a, b))
    return Measured([v[a] - v[b] for v in m.values], m.seeds, m.why)


def distribution_gap(summaries: dict[str, dict], size: str, by: str = "plateau") -> Measured:
    """``{2w, 3w}``: how much the data's distribution matters, same data against disjoint: ``by`` ``plateau``,
    |epochs to the accuracy plateau (strict criterion, median over workers)| (what Fig 5.4 counts); ``accuracy``,
    |mean accuracy over the epochs|, points (how the conclusions read it)."""
    per_seed = []
    names = tuple(redshift_run(size, d, w) for d in ("same", "disjoint") for w in ("2w", "3w"))
    for seed, runs in seed_sets(summaries, names):
        values = {w: abs(_distribution_level(runs, redshift_run(size, "same", w), by)
                         - _distribution_level(runs, redshift_run(size, "disjoint", w), by)) for w in ("2w", "3w")}
        unit = " epochs" if by == "plateau" else " points"
        per_seed.append((seed, values, ", ".join(f"{k} {v:.1f}{unit}" for k, v in values.items())))
    return _measured(per_seed)


def _distribution_level(runs: dict[str, dict], name: str, by: str) -> float:
    if by == "plateau":
        return _plateau_median(runs[name], name, PLATEAU)
    return 100 * statistics.mean(_mean_curve(runs[name], "accuracy"))


def _loss_plateau_median(s: dict) -> float | None:
    """Median over the run's workers of the epochs to their loss plateau; None when none reached one."""
    curves = list(_curves(s).values())
    epochs = [epochs_to_plateau([r["loss"] for r in c], "loss", 1, 0.001) for c in curves]
    if all(e is None for e in epochs):
        return None
    return float(statistics.median(e if e is not None else len(c) + 1 for e, c in zip(epochs, curves, strict=True)))


def loss_plateau_reduction(summaries: dict[str, dict], size: str, dist: str) -> Measured:
    """% fewer epochs to the loss plateau (patience 1, min delta 0.001; Fig 5.5; the median over the workers,
    one that never reached it counting as its epochs + 1), 3 workers vs 1."""
    a, b = redshift_run(size, dist, "1w"), redshift_run(size, dist, "3w")
    per_seed = []
    for seed, runs in seed_sets(summaries, (a, b)):
        ea, eb = (_loss_plateau_median(runs[n]) for n in (a, b))
        if ea and eb:
            per_seed.append((seed, 100.0 * (1 - eb / ea), f"1 worker epoch {ea:g}, 3 workers epoch {eb:g}"))
    if not per_seed:
        raise NotTestable(f"no pair of {a} and {b} runs reached a loss plateau")
    return _measured(per_seed)


def loss_lag(summaries: dict[str, dict], size: str, single_epoch: int = 3) -> Measured:
    """``{cell: epochs after the sequential CNN's epoch at which the cell's mean loss first reaches the
    sequential CNN's loss at that epoch}`` (Fig 5.6: "one epoch later")."""
    cells = ("same/1w", "same/2w", "same/3w", "disjoint/2w", "disjoint/3w")
    single = redshift_run(size, "same", "single")
    names = (single, *(redshift_run(size, *c.split("/")) for c in cells))
    per_seed = []
    for seed, runs in seed_sets(summaries, names):
        target = _mean_curve(runs[single], "loss")[single_epoch - 1]
        values = {}
        for c in cells:
            curve = _mean_curve(runs[redshift_run(size, *c.split("/"))], "loss")
            values[c] = float(next((i + 1 for i, v in enumerate(curve) if v <= target), len(curve) + 1) - single_epoch)
        per_seed.append((seed, values, f"sequential loss {target:.3f} at epoch {single_epoch}; epochs later: "
                         + ", ".join(f"{k} {v:+g}" for k, v in values.items())))
    return _measured(per_seed)


def accuracy_level_epoch(summaries: dict[str, dict], size: str, level: float) -> Measured:
    """The epoch at which the sequential CNN's training accuracy first reaches ``level``."""
    return epochs_to_reach(summaries, size, "same", "single", level=level)


def _num(v: float) -> str:
    return f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"


def _size(n: float) -> str:
    return f"{n / MB:.2f} MB" if n >= 0.1 * MB else f"{n / 1e3:.1f} KB"


MEASURES: dict[str, Callable[..., Measured]] = {f.__name__: f for f in (
    node_values, run_values, final_metric, ratio, relative_difference, training_speed, batch_traffic, traffic_drop,
    merging_out, parallel_vs_data, accuracy_gains, accuracy_gap, spread_ratio, worker_spread, epochs_to_reach,
    reach_ratio, plateau_reduction, plateau_epochs, plateau_fewer, plateau_difference, distribution_gap,
    loss_plateau_reduction, loss_lag, accuracy_level_epoch, size_gains, wall_time,
)}
