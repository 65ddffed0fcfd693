"""The thesis's claims beside our measurements, each with a verdict and the measurement that explains it.

A claim is a dict: ``what`` (the claim and its figure), ``thesis`` (its value), ``ours``, ``verdict``
(``agree``, ``partly``, ``no`` or ``not measured``; never forced) and ``why`` (the numbers behind ours).
Summaries are keyed by run name (:mod:`ddl_commodity.reproduce.runsets`); a seeded repetition of a cell
(``-seed<k>``) adds to its spread.
"""

from __future__ import annotations

import statistics

from ddl_commodity.reproduce.runsets import config_and_seed

PLATEAU = "accuracy/patience=1/min_delta=0.001"
MB = 1e6

#: Thesis Tables 5.1 and 5.2 (5K samples): epochs to stable training accuracy per worker.
THESIS_TABLES = {
    "accuracy/patience=1/min_delta=0.001": {
        "same": {"single": [8], "1w": [8], "2w": [7, 7], "3w": [6, 6, 6]},
        "disjoint": {"single": [8], "1w": [8], "2w": [6, 5], "3w": [6, 6, 6]},
    },
    "accuracy/patience=3/min_delta=0.0001": {
        "same": {"single": [14], "1w": [16], "2w": [13, 13], "3w": [13, 13, 13]},
        "disjoint": {"single": [14], "1w": [16], "2w": [15, 15], "3w": [10, 10, 10]},
    },
}


def claims(summaries: dict[str, dict]) -> list[dict]:
    """Every claim the runs in ``summaries`` can speak to (a claim without its runs says not measured)."""
    return [*(fig_5_4(summaries, dist) for dist in ("same", "disjoint")), fig_6_5(summaries), fig_6_7(summaries),
            *model_vs_data_parallel(summaries)]


def _claim(what: str, thesis: str, ours: str, verdict: str, why: str) -> dict:
    return {"what": what, "thesis": thesis, "ours": ours, "verdict": verdict, "why": why}


def time_to_plateau(s: dict, criterion: str = PLATEAU) -> tuple[float, str] | None:
    """Seconds until the first worker's accuracy plateau (its plateau epoch x the run's mean seconds per
    epoch of that worker), with how it was reached; None when no worker plateaued."""
    best = None
    for worker, epochs in s.get("epochs_to_plateau", {}).get(criterion, {}).items():
        w = s["workers"].get(worker)
        if epochs is None or w is None:
            continue
        per_epoch = s["wall_seconds"] / max(w["epochs"], 1)
        if best is None or epochs * per_epoch < best[0]:
            best = (epochs * per_epoch, f"epoch {epochs} x {per_epoch:.1f} s")
    return best


def _epoch_split(s: dict) -> str:
    """Where a mean epoch of the run's workers went: training, waiting at the PS, the rest (the next feed
    epoch's job, validation); empty for runs that did not record it."""
    workers = [w for w in s.get("workers", {}).values() if w.get("epoch_seconds_mean") is not None]
    if not workers or any(w.get("train_seconds_mean") is None for w in workers):
        return ""
    epoch, train, sync = (statistics.mean(w.get(k) or 0.0 for w in workers)
                          for k in ("epoch_seconds_mean", "train_seconds_mean", "sync_seconds_mean"))
    return (f"; a worker's epoch {epoch:.1f} s: training {train:.1f}, at the PS {sync:.1f}, "
            f"the rest {max(epoch - train - sync, 0.0):.1f}")


def _less_or_more(percent_less: float) -> str:
    return f"{percent_less:.0f}% less" if percent_less >= 0 else f"{-percent_less:.0f}% more"


def fig_5_4(summaries: dict[str, dict], dist: str) -> dict:
    """3 workers vs 1: time to stable accuracy (thesis: 25% less), per seed; verdict on the median, partly
    when the seeds disagree on the side of half the thesis's gain."""
    what = f"time to stable accuracy, 3 workers vs 1 ({dist} data, Fig 5.4)"
    pairs, why = [], []
    for name in sorted(summaries):
        config, seed = config_and_seed(name)
        if config != f"redshift-5k-{dist}-1w":
            continue
        three = summaries.get(name.replace("-1w", "-3w"))
        t1, t3 = time_to_plateau(summaries[name]), time_to_plateau(three) if three else None
        if t1 and t3:
            pairs.append(100.0 * (1 - t3[0] / t1[0]))
            why.append(f"seed {seed or 1}: 1 worker {t1[0]:.0f} s ({t1[1]}{_epoch_split(summaries[name])}), "
                       f"3 workers {t3[0]:.0f} s ({t3[1]}{_epoch_split(three)})")
    if not pairs:
        return _claim(what, "25% less", "not measured", "not measured", "no pair of 1- and 3-worker runs plateaued")
    mid = statistics.median(pairs)
    ours = _less_or_more(mid) + (f" (median of {len(pairs)} seeds, {_less_or_more(max(pairs))} to "
                                 f"{_less_or_more(min(pairs))})" if len(pairs) > 1 else "")
    sides = {p >= 12.5 for p in pairs}
    verdict = "partly" if len(sides) > 1 else ("agree" if mid >= 12.5 else "no")
    return _claim(what, "25% less", ours, verdict, "; ".join(why))


def _cluster_rx(s: dict) -> float:
    return sum(n.get("rx_mb_per_s") or 0.0 for n in s.get("nodes", {}).values())


def _per_step(s: dict) -> tuple[float, float]:
    """(shape-computed MB received per step over all nodes, measured seconds per step)."""
    computed = sum(n["rx_bytes"] for n in s.get("boundary_bytes_per_step", {}).get("per_node", {}).values()) / MB
    steps = [n["seconds_per_step"] for n in s.get("nodes", {}).values() if n.get("seconds_per_step")]
    return computed, (statistics.median(steps) if steps else float("nan"))


def fig_6_5(summaries: dict[str, dict]) -> dict:
    """Cluster incoming traffic, batch 10 vs 50 and 200 (thesis: about 5x)."""
    what = "cluster incoming traffic, batch 10 vs 50 and 200 (Fig 6.5)"
    runs = {b: summaries.get(f"landcover-batch{b}") for b in (10, 50, 200)}
    if not all(runs.values()) or min(_cluster_rx(runs[50]), _cluster_rx(runs[200])) <= 0:
        return _claim(what, "about 5x", "not measured", "not measured", "the three batch runs are not all there")
    r50, r200 = (_cluster_rx(runs[10]) / _cluster_rx(runs[b]) for b in (50, 200))
    close = [r >= 2.5 for r in (r50, r200)]
    verdict = "agree" if all(close) else "partly" if any(close) else "no"
    parts = []
    for b, s in runs.items():
        mb, sec = _per_step(s)
        parts.append(f"batch {b}: {mb:.2f} MB/step from the shapes, {sec:.3f} s/step -> {mb / sec:.1f} MB/s "
                     f"(measured {_cluster_rx(s):.1f})")
    why = ("traffic per second = bytes per step / seconds per step; bytes per step are the PS's weights (the "
           "same at every batch) plus activations and their gradients (proportional to the batch). " + "; ".join(parts))
    return _claim(what, "about 5x", f"{r50:.1f}x and {r200:.1f}x", verdict, why)


def fig_6_7(summaries: dict[str, dict]) -> dict:
    """The merging worker's outgoing traffic, default -> Fig 6.7 scheme (thesis: about 10 -> 2.5 MB/s)."""
    what = "merging worker outgoing traffic, default -> Fig 6.7 scheme (Figs 6.6, 6.8)"
    default, f67 = summaries.get("landcover-default-8k"), summaries.get("landcover-fig6_7")
    rates = [(s or {}).get("nodes", {}).get("worker-2", {}).get("tx_mb_per_s") for s in (default, f67)]
    if not all(rates):
        return _claim(what, "about 10 -> 2.5 MB/s", "not measured", "not measured", "a run is missing")
    a, b = rates
    why = []
    for label, s in (("default", default), ("Fig 6.7", f67)):
        crossings = s.get("boundary_bytes_per_step", {}).get("crossings", [])
        sent = [f"{c['tensor']} -> {c['target']} {_size(c['forward_bytes'])}" for c in crossings
                if c["source"] == "worker:2"]
        sent += [f"gradient of {c['tensor']} -> {c['source']} {_size(c['backward_bytes'])}" for c in crossings
                 if c["target"] == "worker:2" and c["backward_bytes"]]
        node = s["nodes"]["worker-2"]
        computed = s.get("boundary_bytes_per_step", {}).get("per_node", {}).get("worker:2", {}).get("tx_bytes", 0)
        why.append(f"{label}: worker-2 sends {_size(node['tx_bytes_per_step'])}/step measured, {_size(computed)} "
                   f"from the shapes ({', '.join(sent) or 'no activations'}, plus its weights to the PS) in "
                   f"{node['seconds_per_step']:.3f} s/step")
    ratio = a / b
    verdict = "agree" if ratio >= 2.0 else "partly" if ratio > 1.0 else "no"
    return _claim(what, "about 10 -> 2.5 MB/s", f"{a:.1f} -> {b:.1f} MB/s", verdict, "; ".join(why))


def _size(n: float) -> str:
    return f"{n / MB:.2f} MB" if n >= 0.1 * MB else f"{n / 1e3:.1f} KB"


def model_vs_data_parallel(summaries: dict[str, dict]) -> list[dict]:
    """Per-worker CPU % and memory, model vs data parallel at 2.5K patches (thesis: model parallel lower)."""
    mp, dp = summaries.get("landcover-default-2.5k"), summaries.get("landcover-dp-2.5k")
    out = []
    for key, label in (("cpu_percent_mean", "CPU % per worker"), ("memory_mb_mean", "memory MB per worker")):
        what = f"model vs data parallel, {label}, 2.5K patches (Figs 6.21-6.24)"
        if not (mp and dp and mp.get("node_averages") and dp.get("node_averages")):
            out.append(_claim(what, "model parallel lower", "not measured", "not measured", "a run is missing"))
            continue
        if key == "memory_mb_mean" and not all(_workers_have(s, key) for s in (mp, dp)):
            key = "rss_mb_mean"  # nodes without a group: the TF process and its children only
        per = {name: {k: v[key] for k, v in s["node_averages"].items() if k.startswith("worker")}
               for name, s in (("model parallel", mp), ("data parallel", dp))}
        a, b = (statistics.mean(v.values()) for v in per.values())
        why = "; ".join(f"{name}: " + ", ".join(f"{w} {v:.0f}" for w, v in sorted(nodes.items()))
                        for name, nodes in per.items())
        why = _MEASURED_AS.get(key, "") + why
        parts = _where_it_went(mp, dp, "cpu_seconds_by_part" if key.startswith("cpu") else "pss_mb_max_by_part")
        out.append(_claim(what, "model parallel lower", f"{a:.0f} vs {b:.0f}", "agree" if a < b else "no",
                          why + (f"; {parts}" if parts else "")))
    return out


_MEASURED_AS = {"memory_mb_mean": "mean of the node's memory (its group: every process of it, and the page cache "
                                    "it charged); ",
                "rss_mb_mean": "mean RSS of the TF process and its children (the nodes had no group); "}


def _workers_have(s: dict, key: str) -> bool:
    workers = [a for node, a in s["node_averages"].items() if node.startswith("worker")]
    return bool(workers) and all(a.get(key) is not None for a in workers)


def _where_it_went(mp: dict, dp: dict, key: str) -> str:
    """Per mode, the workers' CPU seconds (summed) or peak MB (mean) by part: TF main thread, gRPC, other
    TF threads, Spark JVM, Spark Python workers (:mod:`ddl_commodity.monitor.sampler`)."""
    said = []
    for name, s in (("model parallel", mp), ("data parallel", dp)):
        workers = [a[key] for node, a in s["node_averages"].items() if node.startswith("worker") and a.get(key)]
        if not workers:
            return ""
        names = sorted({k for w in workers for k in w})
        total = {k: sum(w.get(k, 0.0) for w in workers) for k in names}
        if key.startswith("pss"):
            total = {k: v / len(workers) for k, v in total.items()}
        said.append(f"{name} " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(total.items(), key=lambda kv: -kv[1])))
    unit = "CPU seconds, all workers" if key.startswith("cpu") else "peak proportional MB, mean worker"
    return f"where it went ({unit}): " + "; ".join(said)


def plateau_rows(summaries: dict[str, dict]) -> list[str]:
    """Tables 5.1 / 5.2 side by side as Markdown (seeded repetitions as extra rows)."""
    lines = []
    for criterion, thesis in THESIS_TABLES.items():
        table = "5.1" if "patience=1" in criterion else "5.2"
        lines += [f"### Epochs to stable accuracy, `{criterion}` (thesis Table {table})",
                  "", "| data | cluster | thesis (per worker) | ours (per worker) |", "|---|---|---|---|"]
        for dist in ("same", "disjoint"):
            for size in ("single", "1w", "2w", "3w"):
                cell = "redshift-5k-single" if size == "single" else f"redshift-5k-{dist}-{size}"
                runs = sorted(n for n in summaries if config_and_seed(n)[0] == cell) or [cell]
                want = ", ".join(str(v) for v in thesis[dist][size])
                for name in runs:
                    per = summaries.get(name, {}).get("epochs_to_plateau", {}).get(criterion)
                    ours = "not run" if name not in summaries else ", ".join(
                        "none" if per[w] is None else str(per[w]) for w in sorted(per or {})) or "-"
                    seed = config_and_seed(name)[1]
                    lines.append(f"| {dist} | {size}{f' (seed {seed})' if seed else ''} | {want} | {ours} |")
        lines.append("")
    return lines
