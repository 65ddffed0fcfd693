"""MkDocs hooks (``hooks:`` in mkdocs.yml): the benchmark tables are read from ``benchmarks/results/*.json``
when the site is built, never copied into a page by hand.

A page asks for a table with a placeholder on a line of its own, ``<!-- bench:NAME -->``; NAME is a key of
:data:`TABLES`. ``<!-- bench:env:FILE -->`` gives the machine and versions a result file was measured with.
The result files' plots (``benchmarks/results/*.png``) are added to the site as ``benchmarks/<file>.png``.
An unknown placeholder or a missing result file fails the build.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

PLACEHOLDER = re.compile(r"^<!-- bench:([\w:.-]+) -->$", re.M)


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def _results(config) -> Path:
    return _root(config) / "benchmarks" / "results"


def _load(config, name: str) -> dict:
    path = _results(config) / f"{name}.json"
    if not path.is_file():
        raise PluginError(f"docs/hooks.py: {path} not found (run: python -m benchmarks.{name.split('_m')[0]})")
    return json.loads(path.read_text())


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _n(x: float | None, digits: int = 3) -> str:
    """A figure with ``digits`` significant digits, thousands separated; '-' for none."""
    if x is None:
        return "-"
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _mb(x: float) -> str:
    return f"{x / 1e6:.2f}"


# ---------------------------------------------------------------------------------------------------------


FEEDING_MODES = {
    "c_in_memory": "(c) in-memory Keras loop",
    "b_tensorflow_input": "(b) TensorFlow input, tf.data + HDF5",
    "a_spark_records": "(a) TFoS Spark input, 1 sample per record",
    "c_before_bundles": "(c) in-memory, right before (a) bundles",
    "a_spark_bundles": "(a) TFoS Spark input, bundles (ours)",
    "c_after_bundles": "(c) in-memory, right after (a) bundles",
    "c_in_memory_repeat": "(c) in-memory Keras loop, again",
}


def feeding(config) -> str:
    d = _load(config, "feeding")
    beside = d.get("c_beside_bundles_samples_per_s", {})
    rows = []
    for key, m in d["modes"].items():
        three = key.endswith("_3w")
        label = FEEDING_MODES.get(key.removesuffix("_3w"), key) + (", 3 workers side by side" if three else "")
        ref = beside.get("3") if three else (beside.get("1") if key == "a_spark_bundles" else d["c_samples_per_s"])
        rows.append([label, f"{m['samples']:,}", _n(m["samples_per_s"]), f"{m['samples_per_s'] / ref:.3f}",
                     _n(m["seconds"]), _n(m["wait_seconds"]), _n(m["end_to_end_seconds"])])
    s = d["settings"]
    by_workers = d.get("ratio_spark_bundles_to_in_memory_by_workers", {})
    ratios, over = d.get("ratios", {}), d.get("spark_overheads", {})
    text = [f"{s['samples']:,} spectra x {s['epochs']} epochs, batch {s['batch_size']}, filters "
            f"{' and '.join(map(str, s['filters']))} ({s['parameters']:,} weights), bundles of "
            f"{s['bundle_batches']} batches; {d['mode']} mode.", "",
            _table(["mode", "samples", "samples/s", "ratio to (c)", "seconds", "waiting for data s", "end-to-end s"],
                   rows), "",
            "**`ratio_spark_bundles_to_in_memory`**: "
            + ", ".join(f"**{v:.3f}** with {k} worker{'s' if k != '1' else ''}" for k, v in by_workers.items())
            + f"; one sample per record {ratios.get('a_records_over_c', float('nan')):.2f}, "
            f"(b) TensorFlow input {ratios.get('b_over_c', float('nan')):.2f}."]
    if over:
        text.append(f"Start-up, in no row: the Spark cluster {over['cluster_start_seconds']:.1f} s, "
                    f"`TFCluster.run` {over['tfcluster_start_seconds']:.1f} s.")
    return "\n".join(text)


def parameter_server(config) -> str:
    d = _load(config, "parameter_server")
    rows = []
    for m in d["measurements"]:
        raw = m.get("raw_socket", {}).get("latency", {}).get("median_ms")
        rows.append([f"{m['params']:,}", m["s"], m["timed_pushes"], _n(m["latency"]["median_ms"]),
                     _n(m["latency"]["p90_ms"]), _n(raw), f"{m['latency']['median_ms'] / raw:.2f}" if raw else "-",
                     _n(m["apply"]["median_ms"]), _n(m["updates_per_s"]), f"{m['wire']['request_bytes']:,}"])
    big = {k: v for k, v in d["ratio_to_raw_socket"].items() if k.startswith("10M")}
    return "\n".join([
        _table(["parameters", "M = s", "timed pushes", "median ms", "p90 ms", "raw socket ms", "x raw", "apply ms",
                "updates/s", "request bytes"], rows), "",
        "`ratio_to_raw_socket` at 10M parameters: "
        + ", ".join(f"**{v:.2f}** ({k.split('/')[1]})" for k, v in big.items()) + "."])


def _async_rows(d: dict) -> list[list[object]]:
    rows = []
    m = d["settings"]["workers"]
    for run in ("ps", "allreduce"):
        plateau = d["epochs_to_plateau"][run]
        crit = [v for k, v in plateau.items() if k.startswith("val_accuracy/")]
        times = []
        for t in d["targets"]:
            hit = t.get(run)
            times.append(f"{hit['seconds']:.0f} s (epoch {hit['epoch']})" if hit else "not reached")
        name = f"ps (ours, s = {d['settings']['s']})" if run == "ps" else "all-reduce (MWMS)"
        rows.append([m, name, f"{d['best_val_accuracy'][run]:.3f}", " / ".join(map(str, crit)), *times,
                     f"{d['median_epoch_seconds'][run]:.2f}", f"{d['runs'][run]['job_seconds']:.0f}"])
    return rows


def async_vs_allreduce(config) -> str:
    runs = [_load(config, name) for name in ("async_vs_allreduce", "async_vs_allreduce_m3")
            if (_results(config) / f"{name}.json").is_file() or name == "async_vs_allreduce"]
    rows = [r for d in runs for r in _async_rows(d)]
    first = runs[0]["targets"]
    heads = [("time to 90% of the common best" if t["metric"] == "val_accuracy" and t["fraction"] < 1 else
              "time to the common best" if t["metric"] == "val_accuracy" else "time to the common val loss")
             for t in first]
    ratios = []
    for d in runs:
        parts = ", ".join(f"{t['time_ratio_allreduce_over_ps']:.2f}" for t in d["targets"])
        ratios.append(f"M = {d['settings']['workers']}: {parts} (per epoch "
                      f"{d['epoch_time_ratio_allreduce_over_ps']:.2f})")
    return "\n".join([
        _table(["M", "run", "best val acc", "epochs to plateau (Table 5.1 / 5.2 criterion)", *heads,
                "s / epoch (median)", "whole job s"], rows), "",
        "All-reduce / PS wall time to 90% of the common best, to the common best and to the common validation "
        "loss: " + "; ".join(ratios) + "."])


def model_parallel_traffic(config) -> str:
    d = _load(config, "model_parallel_traffic")
    rows = [[m["scheme"], m.get("figure", ""), _mb(m["cluster_bytes_per_step"]),
             _mb(m["cluster_analytical_bytes_per_step"]), f"{m['ratio']:.3f}", _mb(m["activation_bytes_per_step"]),
             _mb(m["weight_bytes_per_step"])] for m in d["measurements"]]
    ratios = [m["ratio"] for m in d["measurements"]]
    return "\n".join([
        f"Batch {d['batch']}, {d['steps_per_epoch']} steps per epoch; traffic measured by "
        f"`{d['measurements'][0].get('net_method', '?')}`.", "",
        _table(["scheme", "figure", "measured MB/step (all nodes in)", "from the shapes MB/step", "ratio",
                "activations MB/step", "weights MB/step"], rows), "",
        f"Measured traffic is {min(ratios):.1%} to {max(ratios):.1%} of the shape-computed minimum."])


def cluster_fidelity(config) -> str:
    d = _load(config, "cluster_fidelity")
    fair = _table(["node", "quota (cores)", "measured", "abs(measured - quota) / quota"],
                  [[n, v["quota"], f"{v['measured']:.3f}", f"{v['error']:.4f}"]
                   for n, v in d["fairness"]["nodes"].items()])
    runs = _table(["run", "median train s / epoch", "median epoch s (feed waits included)", "whole run s"],
                  [[k, f"{v['train_seconds_median']:.2f}", f"{v['epoch_seconds_median']:.2f}",
                    f"{v['run_seconds']:.0f}"] for k, v in d["runs"].items()])
    return "\n".join([
        f"**Fairness**: {len(d['fairness']['nodes'])} nodes, a busy loop on each for "
        f"{d['fairness']['seconds']:.0f} s: **`cpu_share_error_max` = {d['cpu_share_error_max']:.4f}**.", "", fair, "",
        f"**3 workers vs 1**: **`epoch_time_ratio_3w_1w` = {d['epoch_time_ratio_3w_1w']:.3f}** on the thesis "
        f"profile, {d['epoch_time_ratio_3w_1w_unisolated']:.3f} unisolated.", "", runs])


def planner(config) -> str:
    d = _load(config, "planner")
    speeds = list(d["validation"])
    schemes = list(next(iter(d["validation"].values()))["schemes"])
    figures = {}
    for name in schemes:
        path = _root(config) / "configs" / "splits" / f"{name}.yaml"
        if path.is_file():
            found = re.search(r'^figure:\s*"?([^"\n]+)"?', path.read_text(), re.M)
            figures[name] = found.group(1) if found else ""
    rows = []
    for name in schemes:
        label = f"{name} ({figures[name]})" if figures.get(name) else ("planned (the pick)" if name == "planned"
                                                                        else name)
        row = [label]
        for speed in speeds:
            v = d["validation"][speed]["schemes"].get(name, {})
            kept = f" (`{v['same_as']}` kept)" if v.get("same_as") else ""
            row += [f"{v['predicted_s']:.3f}{kept}" if v else "-", f"{v['measured_s']:.3f}" if v else "-"]
        rows.append(row)
    for key, goal in (("step_time_median_abs_error", "goal ≤ 0.15"), ("spearman", "goal ≥ 0.8"),
                      ("pick_vs_best_thesis", "goal ≤ 1.0")):
        row = [f"`{key}` ({goal})"]
        for speed in speeds:
            value = d["validation"][speed].get(key)
            row += [f"**{value:.3g}**" if value is not None else "-", ""]
        rows.append(row)
    header = ["scheme"] + [h for s in speeds for h in (f"{s} predicted s/step", f"{s} measured")]
    return "\n".join([_table(header, rows), "", *_planner_more(d)])


def _planner_more(d: dict) -> list[str]:
    """The planner's user models, data-parallel, PS-bound and scaling results, those the results hold."""
    def epochs(cells: dict) -> str:
        return _table(["workers M", "predicted s / epoch", "measured s / epoch", "error"],
                      [[m, f"{v['predicted_epoch_s']:.2f}", f"{v['measured_epoch_s']:.2f}", f"{v['error']:.1%}"]
                       for m, v in cells.items()])

    out = []
    users = d.get("user_models", {})
    if users:
        out += ["Models no one tuned the planner for (400mbit; their own split, all on the input worker, the pick):",
                "", _table(["model", "scheme", "predicted s/step", "measured", ""],
                           [[name, scheme, f"{r['predicted_s']:.3f}", f"{r['measured_s']:.3f}", ""]
                            for name, v in users.items() for scheme, r in v.get("schemes", {}).items()]
                           + [[name, "**median error**", "", "", f"**{v['step_time_median_abs_error']:.3f}**"]
                              for name, v in users.items() if "step_time_median_abs_error" in v]), ""]
    dp = d.get("data_parallel", {})
    for link, cells in dp.items():
        if isinstance(cells, dict) and cells and not link.isdigit():
            out += [f"Data parallel (redshift, `same` data, s = M, the thesis profile, links {link}):", "",
                    epochs(cells), ""]
    embedded = d.get("data_parallel_embedded") or {m: v for m, v in dp.items() if m.isdigit()}
    if embedded:
        out += ["Data parallel as `ddl run` on the embedded cluster of the thesis profile (earlier model):", "",
                epochs(embedded), ""]
    if d.get("ps_bound"):
        out += ["PS-bound: 400mbit links but the PS's shaped to 40mbit:", "", epochs(d["ps_bound"]), ""]
    for profile, v in d.get("scaling", {}).items():
        curve = v["epoch_s_by_workers"]
        shown = [m for m in ("1", "2", "4", "8", "16", "32", "64") if m in curve]
        out += [f"Predicted for `{v['config']}` on the {profile} profile (s = {v['s']}): break-even "
                f"**{v['break_even_workers']}** workers.", "",
                _table(["workers M", *shown], [["s / epoch", *(f"{curve[m]:.1f}" for m in shown)],
                                               ["s to the target", *(f"{v['time_to_target_s_by_workers'][m]:.0f}"
                                                                     for m in shown)]]), ""]
    return out


def epoch_overhead(config) -> str:
    d = _load(config, "epoch_overhead")
    runs = d["runs"]
    rows = []
    for i in range(1, d["settings"].get("pairs", 1) + 1):
        single, worker = runs.get(f"single/thesis/{i}"), runs.get(f"worker/thesis/{i}")
        if single and worker:
            rows.append([f"thesis profile, pair {i}", f"{single['epoch_seconds_median']:.2f}",
                         f"{worker['epoch_seconds_median']:.2f}",
                         f"{worker['epoch_seconds_median'] / single['epoch_seconds_median']:.3f}",
                         f"{worker['train_seconds_median'] / single['train_seconds_median']:.3f}"])
    single, worker = runs.get("single/unisolated"), runs.get("worker/unisolated")
    if single and worker:
        rows.append(["unisolated", f"{single['epoch_seconds_median']:.2f}", f"{worker['epoch_seconds_median']:.2f}",
                     f"{d['ratio_worker_epoch_to_single_epoch_unisolated']:.3f}",
                     f"{d['ratio_worker_train_to_single_train_unisolated']:.3f}"])
    return "\n".join([
        _table(["pair", "single epoch s", "worker epoch s", "worker / single, epoch", "worker / single, steps"], rows),
        "", f"**`ratio_worker_epoch_to_single_epoch` = {d['ratio_worker_epoch_to_single_epoch']:.3f}** (the median "
        f"of the pairs on the profile; steps alone {d['ratio_worker_train_to_single_train']:.3f}; one pair "
        f"unisolated {d['ratio_worker_epoch_to_single_epoch_unisolated']:.3f})."])


def data_scale(config) -> str:
    d = _load(config, "data_scale")
    sizes = sorted(d["data_sets"], key=int)
    rows = []
    for n in sizes:
        data, run = d["data_sets"][n], d["runs"][n]
        rows.append([f"{int(n):,}", f"{data['spectra_bytes'] / 2**30:.2f}", f"{data['parquet_bytes'] / 2**30:.2f}",
                     f"{run['driver_peak_rss_mb']:.0f}", f"{d['node_peak_memory_mb'][n]:.0f}",
                     f"{d['node_peak_working_set_mb'][n]:.0f}",
                     f"{run['worker_rx_bytes_over_shard_bytes']:.3f}" if "failed" not in run
                     else f"failed: {run['failed']}", f"{run['run_seconds']:.0f}"])
    caps = d["caps"]
    control, p = d.get("control_in_memory"), d["predict"]
    goals = [[f"`{k}`", json.dumps(d[k]) if isinstance(d[k], dict) else f"{d[k]:.3f}", goal,
              "met" if d["goal_met"][k] else "**missed**"] for k, goal in d["goals"].items()]
    return "\n".join([
        f"{caps['spark_workers']} Spark workers ({caps['tf_workers']} TF workers and the PS), each "
        f"{caps['node_cpus']:g} core and {caps['node_memory']} (together {caps['sum_of_spark_worker_caps_mb']:,.0f} "
        f"MB); the master and driver {caps['master_memory']}; links {caps['link']}.", "",
        _table(["rows", "GiB of spectra", "GiB of Parquet", "driver peak RSS MB", "node peak MB held", "(working set)",
                "worker rx / shard bytes", "run s"], rows), "",
        _table(["figure", "measured", "goal", ""], goals), "",
        (f"Control, the in-memory path at {control['rows']:,} rows (the driver loads the rows, every executor "
         f"downloads them): worker rx / shard bytes **{control['worker_rx_bytes_over_shard_bytes']:.2f}**, driver "
         f"{control['driver_peak_rss_mb']:.0f} MB, node peak {control['node_peak_memory_mb']:.0f} MB." if control
         else ""),
        "", f"Scoring {p['rows']:,} rows: `ddl predict` {p['ddl_predict']['samples_per_s']:,.0f} "
        f"rows/s on {p['ddl_predict']['executors']} executors, one process "
        f"{p['single_before']['samples_per_s']:,.0f} and {p['single_after']['samples_per_s']:,.0f}"
        f" rows/s before and after (steady rates: ratio {_n(p['steady_ratio'])}). Feeding from Parquet "
        f"/ (c) {d['feeding']['parquet_over_c']:.3f}, from rows in memory / (c) "
        f"{d['feeding']['in_memory_rdd_over_c']:.3f}."])


def environment(config, name: str) -> str:
    d = _load(config, name)
    env = d.get("environment", {})
    versions = env.get("versions", {})
    shown = ", ".join(f"{k} {versions[k]}" for k in ("tensorflow-cpu", "keras", "tensorflowonspark", "pyspark")
                      if k in versions)
    load = env.get("load_average_1m")
    return (f"*Measured in {d.get('mode', '?')} mode on {env.get('cpu_count', '?')} cores "
            f"({env.get('cpu_model', '?')}), {env.get('memory_total_gb', '?')} GB"
            + (f", load average {load:.1f} at the start" if load is not None else "")
            + (f"; {shown}" if shown else "") + f" (`benchmarks/results/{name}.json`).*")


TABLES = {"feeding": feeding, "parameter_server": parameter_server, "async_vs_allreduce": async_vs_allreduce,
          "model_parallel_traffic": model_parallel_traffic, "cluster_fidelity": cluster_fidelity,
          "planner": planner, "epoch_overhead": epoch_overhead, "data_scale": data_scale}


def _replace(match: re.Match, config) -> str:
    key = match.group(1)
    if key.startswith("env:"):
        return environment(config, key.removeprefix("env:"))
    if key not in TABLES:
        raise PluginError(f"docs/hooks.py: unknown placeholder <!-- bench:{key} --> (known: {', '.join(TABLES)})")
    try:
        return TABLES[key](config)
    except (KeyError, TypeError, ZeroDivisionError, ValueError, statistics.StatisticsError) as err:
        raise PluginError(f"docs/hooks.py: benchmarks/results for {key!r} lack what the table needs: {err!r}") \
            from err


def on_page_markdown(markdown: str, page, config, files) -> str:
    return PLACEHOLDER.sub(lambda m: _replace(m, config), markdown)


def on_files(files, config):
    """The result plots, as site files under ``benchmarks/``."""
    for png in sorted(_results(config).glob("*.png")):
        files.append(File.generated(config, f"benchmarks/{png.name}", abs_src_path=str(png)))
    return files
