"""Benchmark 6: the planner's predictions against measured runs, section by section.

* ``validation``: per link speed -- the thesis profile's 1 Gbit equivalent (d x 1 Gbit/s = 400mbit on 2 cores)
  and the 100 Mbit equivalent (40mbit) -- a five-node namespace cluster on the thesis profile (every node 0.4
  core and 2 GB, links shaped with tc); ``ddl plan``'s predictions for every shipped split scheme and the
  planner's own pick, each run as a land-cover model-parallel job (``ddl cluster submit``). Measured: seconds
  per training step over the run's steady epochs (the first left out), from the run summary. Per speed:
  ``step_time_median_abs_error`` (median of |predicted - measured| / measured), ``spearman`` (rank correlation
  of predicted and measured), ``pick_vs_best_thesis`` (measured step of the pick over the best measured thesis
  scheme; a pick that keeps a shipped scheme is that scheme's run, ``same_as`` it).
* ``docker``: the same schemes on the compose cluster (``scripts/docker-cluster.sh``: containers with
  ``cpus: 1.0`` on their bridge network), predicted for nodes of one core each (each container's quota: the five
  share this machine's two cores, but a split step keeps at most two of them busy at once) and an unshaped
  link: ``validation.docker``.
* ``user_models``: models no one tuned the planner for -- ``examples/two_inputs.py`` and the multi-branch
  ``examples/field_yield.py`` -- their own split, everything on the input worker, and the planner's pick, at
  400mbit on the namespace cluster: ``user_models.<name>.step_time_median_abs_error``.
* ``data_parallel``: the redshift task (``same`` data, s = M) with M = 1..4 workers on a namespace cluster of
  the thesis profile (M + 2 nodes: master, PS, workers) at both link speeds, against the planner's seconds per
  epoch: ``data_parallel.<link>.<M>``.
* ``ps_bound``: the same at M = 3 and 4 and 400mbit, with only the PS's link shaped 10x slower (40mbit, both
  directions, from the moment TFoS has placed the PS): ``ps_bound.<M>``.
* ``scaling``: the planner's curve for the thesis's redshift task (15K samples, disjoint data, s as
  configured) on the thesis profile, M = 1..64: ``scaling.<profile>.{break_even_workers, epoch_s_by_workers}``,
  and its plot next to the JSON.

Every ``ddl plan`` profiles afresh (a cache of its own per invocation), so predictions use the timings of the
machine as it is during the benchmark; a cell about to be measured is profiled again just before it runs
(``--refresh``: a run lasts a minute or two, the machine's speed drifts over minutes). Resumable: every measured cell is
kept in the JSON as it finishes; a re-run with the same --out skips it (its prediction is refreshed from the
planner as it is now). ``--only`` runs some sections, ``--max-cells N`` measures at most N new cells per section.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from benchmarks._common import base_parser, environment, table, write_json

NAME = "planner"
REPO = Path(__file__).resolve().parents[1]
RATES = ("400mbit", "40mbit")
LATENCY_S = 0.0005
SECTIONS = ("validation", "docker", "user_models", "data_parallel", "ps_bound", "scaling")
#: The PS's link in the PS-bound section: 10x slower than the others' 400mbit.
PS_BOUND_RATE = "40mbit"
PS_BOUND_WORKERS = (3, 4)
USER_MODELS = {"two_inputs": "examples/two-inputs-model-parallel.yaml",
               "field_yield": "examples/field-yield-model-parallel.yaml"}
SCALING_CONFIG = "configs/thesis/redshift-15k-disjoint-3w.yaml"
#: How long a section waits for another namespace cluster (one at a time on this machine) to stop.
BUSY_WAIT_S = 3600


class Budget:
    """At most ``limit`` new measured cells per section (None: all of them)."""

    def __init__(self, limit: int | None) -> None:
        self.limit, self.used = limit, 0

    def take(self) -> bool:
        if self.limit is not None and self.used >= self.limit:
            return False
        self.used += 1
        return True


class Bench:
    """The run's settings, scratch folder, result document and where it is saved."""

    def __init__(self, doc: dict, out: Path, tmp: Path, quick: bool, max_cells: int | None) -> None:
        self.doc, self.out, self.tmp, self.quick, self.max_cells = doc, out, tmp, quick, max_cells
        self.waited_s = 0.0  # for other namespace clusters to stop: not part of any cell's run_seconds
        self.env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"),
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}

    def save(self) -> None:
        write_json(self.out, self.doc)

    def budget(self) -> Budget:
        return Budget(self.max_cells)

    def ddl(self, *args: str, cwd: Path | None = None, timeout: float = 3600) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", *args], cwd=cwd or self.tmp, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"ddl {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return proc

    def plan(self, cfg_path: Path, out: Path, *args: str) -> dict:
        """``ddl plan`` (from the checkout, so that ``examples.*`` import) and its JSON."""
        self.ddl("plan", str(cfg_path), "--out", str(out), "--latency-ms", str(LATENCY_S * 1000), *args, cwd=REPO)
        return json.loads(out.with_suffix(".json").read_text())

    def cluster(self, state: Path, nodes: int, rate: str) -> NetnsCluster:
        return NetnsCluster(self, state, nodes, rate)

    def write_config(self, cfg: dict) -> Path:
        path = self.tmp / f"{cfg['name']}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path


class NetnsCluster:
    """``ddl cluster up --netns`` on the thesis profile for a ``with`` block; down at its end."""

    def __init__(self, bench: Bench, state: Path, nodes: int, rate: str) -> None:
        self.bench, self.state, self.nodes, self.rate = bench, state, nodes, rate

    def __enter__(self) -> NetnsCluster:
        deadline = time.monotonic() + BUSY_WAIT_S
        while True:  # namespace clusters share one subnet: wait for another's end
            try:
                self.bench.ddl("cluster", "up", "--nodes", str(self.nodes), "--netns", "--profile", "thesis",
                               "--bandwidth", self.rate, "--state-dir", str(self.state), timeout=300)
                return self
            except RuntimeError as err:
                if "namespace cluster" not in str(err) or "is running" not in str(err) or \
                        time.monotonic() > deadline:
                    raise
                print("another namespace cluster is running: waiting for it to stop", flush=True)
                time.sleep(15)
                self.bench.waited_s += 15

    def __exit__(self, *exc: object) -> None:
        self.bench.ddl("cluster", "down", "--state-dir", str(self.state), timeout=300)

    def submit(self, cfg: dict, during: Callable[[Path], None] | None = None) -> Path:
        """Run ``cfg`` on the cluster; ``during(run_dir)`` in a thread while it runs. Returns the run dir."""
        path = self.bench.write_config(cfg)
        run_dir = Path(cfg["output"]["runs_dir"]) / cfg["name"]
        watcher = threading.Thread(target=during, args=(run_dir,), daemon=True) if during else None
        if watcher:
            watcher.start()
        self.bench.ddl("cluster", "submit", str(path), "--run-id", cfg["name"], "--state-dir", str(self.state))
        if watcher:
            watcher.join(timeout=5)
        return run_dir


# ---------------------------------------------------------------------------------------------------------
# measurements


def seconds_per_step(run_dir: Path) -> float:
    """Median over the nodes of a model-parallel run's steady seconds per step (its summary)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    return float(np.median([n["seconds_per_step"] for n in summary["nodes"].values()]))


def epoch_timing(run_dir: Path) -> dict:
    """A data-parallel run's epoch seconds, median over workers and epochs (the first left out), and the
    medians of its parts: training steps (with any mid-epoch pushes), the epoch-end push and pull (waiting for
    the PS included), and the rest (scoring the held-out set, waiting for the next epoch's data): what a
    residual is to be read against."""
    records = [json.loads(line) for f in sorted((run_dir / "workers").glob("worker-*.jsonl"))
               for line in f.read_text().splitlines() if line.strip()]
    later = [r for r in records if r["epoch"] > 1]
    parts = {"train_s": [r["train_seconds"] for r in later], "sync_s": [r["sync_seconds"] for r in later],
             "other_s": [r["seconds"] - r["train_seconds"] - r["sync_seconds"] for r in later]}
    return {"measured_epoch_s": float(np.median([r["seconds"] for r in later])),
            "measured_parts": {k: round(float(np.median(v)), 3) for k, v in parts.items()}}


def error(predicted: float, measured: float) -> float:
    return round(abs(predicted - measured) / measured, 4)


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def validate(rows: dict[str, dict]) -> dict:
    pred = [r["predicted_s"] for r in rows.values()]
    meas = [r["measured_s"] for r in rows.values()]
    thesis = {k: r["measured_s"] for k, r in rows.items() if k != "planned"}
    return {
        "step_time_median_abs_error": round(float(np.median([abs(p - m) / m for p, m in zip(pred, meas,
                                                                                           strict=True)])), 4),
        "spearman": round(spearman(pred, meas), 4),
        "pick_vs_best_thesis": round(rows["planned"]["measured_s"] / min(thesis.values()), 4),
        "best_thesis_measured": min(thesis, key=thesis.__getitem__),
        "schemes": rows,
    }


# ---------------------------------------------------------------------------------------------------------
# model parallel: the thesis schemes (namespace cluster, compose cluster) and the user models


def landcover_config(tmp: Path, split: str, epochs: int, rate: str = "") -> dict:
    return {
        "experiment": "landcover", "name": f"plan-{Path(split).stem}-{rate}".rstrip("-"), "seed": 3,
        "data": {"synthetic_scale": 0.1, "patches_per_class": 40, "validation_fraction": 0.2,
                 "cache_dir": str(tmp / "data")},
        "training": {"mode": "model_parallel", "split": split, "workers": 3, "epochs": epochs, "batch_size": 50},
        "monitor": {"interval_s": 0.5},
        "output": {"runs_dir": str(tmp / "runs")},
    }


def refresh_predictions(section: dict, plan: dict) -> None:
    """Re-predict the measured rows of ``section`` (``schemes``) with the planner as it is now; a pick that
    changed since it was measured is kept apart as ``earlier_pick``."""
    done = section.setdefault("schemes", {})
    if section.get("planned_blocks") not in (None, plan["planned"]["blocks"]):
        section["earlier_pick"] = {"blocks": section["planned_blocks"], **done.pop("planned", {})}
    section["planned_blocks"] = plan["planned"]["blocks"]
    for name, row in done.items():
        row["predicted_s"] = plan["planned"]["step_s"] if name == "planned" else plan["schemes"][name]["step_s"]


def measure_schemes(bench: Bench, section: dict, plan: dict, wanted: list[str], run: Callable[[str], float],
                    label: str, replan: Callable[[], dict] | None = None) -> None:
    """Measure each scheme of ``wanted`` not yet in ``section`` with ``run(scheme)`` (within the section's
    budget), saving each as it finishes; a pick that keeps a shipped scheme is that scheme's run. ``replan``
    (``ddl plan --refresh``, rewriting the planned split) predicts each cell from a profile taken just before it."""
    done = section["schemes"]
    budget = bench.budget()
    for name in wanted:
        if name in done or not budget.take():
            continue
        plan = replan() if replan else plan
        if name == "planned" and plan["planned"].get("kept") in done:
            continue  # the pick keeps a measured scheme: that run is its measurement
        if name == "planned":
            section["planned_blocks"] = plan["planned"]["blocks"]
        predicted = plan["planned"]["step_s"] if name == "planned" else plan["schemes"][name]["step_s"]
        t0, waited = time.monotonic(), bench.waited_s
        measured = run(name)
        done[name] = {"predicted_s": predicted, "measured_s": round(measured, 4),
                      "run_seconds": round(time.monotonic() - t0 - (bench.waited_s - waited), 1)}
        print(f"{label} {name}: predicted {predicted:.3f} s/step, measured {measured:.3f}", flush=True)
        bench.save()
    kept = plan["planned"].get("kept")
    if "planned" in wanted and "planned" not in done and kept in done:
        done["planned"] = {**done[kept], "predicted_s": plan["planned"]["step_s"], "same_as": kept}


def summarise(section: dict) -> None:
    done = section["schemes"]
    if "planned" in done and len(done) > 2:
        section.update({k: v for k, v in validate(done).items() if k != "schemes"})


def validation(bench: Bench) -> None:
    epochs = 2 if bench.quick else 5
    base = bench.write_config(landcover_config(bench.tmp, "default", epochs))
    for rate in RATES[:1] if bench.quick else RATES:
        section = bench.doc.setdefault("validation", {}).setdefault(rate, {})
        split = bench.tmp / f"planned-{rate}.yaml"
        args = (base, split, "--profile", "thesis", "--bandwidth", rate)
        plan = bench.plan(*args)
        refresh_predictions(section, plan)
        wanted = ["default", "planned", "single"] if bench.quick else [*plan["schemes"], "planned"]
        todo = [n for n in wanted if n not in section["schemes"]]
        if todo and bench.budget().take():
            state = bench.tmp / f".cluster-{rate}"
            # 13 steps an epoch: 4 steady epochs at 400mbit, 2 at 40mbit where steps take seconds
            run_epochs = epochs if rate == RATES[0] else max(2, epochs - 2)
            with bench.cluster(state, 5, rate) as cluster:
                def run(name: str, split: Path = split, epochs: int = run_epochs, rate: str = rate) -> float:
                    cfg = landcover_config(bench.tmp, str(split) if name == "planned" else name, epochs, rate)
                    return seconds_per_step(cluster.submit(cfg))

                measure_schemes(bench, section, plan, todo, run, rate,
                                lambda args=args: bench.plan(*args, "--refresh"))
        summarise(section)
        bench.save()


def docker(bench: Bench) -> None:
    """The thesis schemes on the compose cluster; predicted for one core per node, each container's quota."""
    section = bench.doc.setdefault("validation", {}).setdefault("docker", {})
    share = 1.0  # docker-compose.yml: cpus 1.0
    runs = bench.tmp / "docker-runs"
    runs.mkdir(parents=True, exist_ok=True)
    epochs = 2 if bench.quick else 4
    base = bench.write_config({**landcover_config(bench.tmp, "default", epochs), "name": "plan-docker-base",
                               "cluster": {"node_cpus": share}})
    plan = bench.plan(base, runs / "planned.yaml")  # no profile, no --bandwidth: the bridge is unshaped
    section["node_cpus"] = share
    refresh_predictions(section, plan)
    wanted = ["default", "planned", "single"] if bench.quick else [*plan["schemes"], "planned"]
    todo = [n for n in wanted if n not in section["schemes"]]
    if not todo or not bench.budget().take():
        summarise(section)
        bench.save()
        return
    script = REPO / "scripts" / "docker-cluster.sh"
    env = {**bench.env, "DDL_RUNS_DIR": str(runs)}

    def compose(*args: str, timeout: float = 1800) -> None:
        proc = subprocess.run(["bash", str(script), *args], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"docker-cluster.sh {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n"
                               f"{proc.stderr[-2000:]}")

    def run(name: str) -> float:
        cfg = yaml.safe_load((REPO / "docker" / "configs" / "landcover.yaml").read_text())
        cfg["name"] = f"plan-docker-{name}"
        cfg["training"].update(epochs=epochs, split="/opt/ddl/runs/planned.yaml" if name == "planned" else name)
        (runs / f"{cfg['name']}.yaml").write_text(yaml.safe_dump(cfg))  # runs/ is /opt/ddl/runs in the master
        compose("submit", f"/opt/ddl/runs/{cfg['name']}.yaml", "--run-id", cfg["name"])
        return seconds_per_step(runs / cfg["name"])

    compose("up", timeout=900)
    try:
        measure_schemes(bench, section, plan, todo, run, "docker",
                        lambda: bench.plan(base, runs / "planned.yaml", "--refresh"))
    finally:
        compose("down", timeout=300)
    summarise(section)
    bench.save()


def user_model_config(bench: Bench, name: str, split: str, epochs: int) -> dict:
    cfg = yaml.safe_load((REPO / USER_MODELS[name]).read_text())
    cfg.update(name=f"user-{name}-{Path(split).stem}", output={"runs_dir": str(bench.tmp / "runs")},
               monitor={"interval_s": 0.5})
    cfg["data"]["path"] = str(bench.tmp / "data" / f"{name}.npz")
    cfg["training"].update(split=split, epochs=epochs)
    return cfg


def user_models(bench: Bench) -> None:
    epochs = 2 if bench.quick else 4
    rate = RATES[0]
    for name in USER_MODELS:
        section = bench.doc.setdefault("user_models", {}).setdefault(name, {})
        own = str(REPO / yaml.safe_load((REPO / USER_MODELS[name]).read_text())["training"]["split"])
        base = user_model_config(bench, name, own, epochs)
        path = bench.write_config(base)
        planned = bench.tmp / f"planned-{name}.yaml"
        plan = bench.plan(path, planned, "--profile", "thesis", "--bandwidth", rate)
        # everything on the input worker: what a user would try first
        single = bench.tmp / f"single-{name}.yaml"
        single.write_text(yaml.safe_dump({"name": f"single-{name}", "variables": "ps:0", "input": "worker:0",
                                          "placement": dict.fromkeys(plan["planned"]["blocks"], "worker:0")}))
        own_name = yaml.safe_load(Path(own).read_text())["name"]
        single_cfg = bench.write_config(user_model_config(bench, name, str(single), epochs))

        def with_single(plan: dict, name: str = name, single_cfg: Path = single_cfg) -> dict:
            """``plan`` with the all-on-the-input-worker split's prediction added (from the profile it cached)."""
            single_plan = bench.plan(single_cfg, bench.tmp / f"planned-single-{name}.yaml", "--profile", "thesis",
                                     "--bandwidth", rate)
            plan["schemes"][f"single-{name}"] = single_plan["schemes"][f"single-{name}"]
            return plan

        def replan(path: Path = path, planned: Path = planned) -> dict:
            return with_single(bench.plan(path, planned, "--profile", "thesis", "--bandwidth", rate, "--refresh"))

        plan = with_single(plan)
        refresh_predictions(section, plan)
        splits = {own_name: own, f"single-{name}": str(single), "planned": str(planned)}
        todo = [n for n in splits if n not in section["schemes"]]
        if todo and bench.budget().take():
            with bench.cluster(bench.tmp / f".cluster-{name}", 5, rate) as cluster:
                def run(scheme: str, name: str = name, splits: dict = splits) -> float:
                    return seconds_per_step(cluster.submit(user_model_config(bench, name, splits[scheme], epochs)))

                measure_schemes(bench, section, plan, todo, run, name, replan)
        rows = section["schemes"]
        if rows:
            section["step_time_median_abs_error"] = round(float(np.median(
                [abs(r["predicted_s"] - r["measured_s"]) / r["measured_s"] for r in rows.values()])), 4)
        bench.save()


# ---------------------------------------------------------------------------------------------------------
# data parallel


def redshift_dp_config(tmp: Path, workers: int, spec: dict, label: str) -> dict:
    return {
        "experiment": "redshift", "name": f"dp-{label}-{workers}w", "seed": 7,
        "data": {"samples": spec["samples"], "validation_fraction": 0.1, "cache_dir": str(tmp / "data")},
        "model": {"filters": [4, 4], "kernel_size": 8, "dropout": 0.1},
        "training": {"mode": "data_parallel", "workers": workers, "epochs": spec["epochs"], "batch_size": 32,
                     "learning_rate": 0.001, "data_distribution": "same"},
        "ps": {"s": workers, "staleness": "inverse"},
        "output": {"runs_dir": str(tmp / "runs")},
    }


def dp_spec(bench: Bench) -> dict:
    return {"samples": 600, "epochs": 3} if bench.quick else {"samples": 2000, "epochs": 4}


def migrate_embedded(doc: dict) -> None:
    """Earlier results kept ``data_parallel.<M>`` (``ddl run`` on the embedded cluster of the thesis profile):
    kept as ``data_parallel_embedded.<M>``, since ``data_parallel`` is now keyed by link speed."""
    rows = doc.get("data_parallel", {})
    old = {k: rows.pop(k) for k in list(rows) if k.isdigit()}
    if old:
        doc.setdefault("data_parallel_embedded", {}).update(old)


def fresh(measuring: bool) -> tuple[str, ...]:
    """``ddl plan``'s flag to profile again when a cell is about to be measured: the machine's speed drifted by
    10-20% within minutes, and a cell is predicted from the step as the machine runs it then."""
    return ("--refresh",) if measuring else ()


def dp_cell(bench: Bench, rows: dict, m: int, point: dict, run: Callable[[], dict], label: str,
            extra: dict | None = None) -> None:
    """Refresh a measured cell's prediction (``point``: the planner's :class:`ScalingPoint` as a dict), or
    measure it (``run``: :func:`epoch_timing` of the run; saving at once)."""
    key, predicted = str(m), point["epoch_s"]
    parts = {k: round(point[k], 3) for k in ("compute_s", "exchange_s")} | {"bound": point["bound"]}
    if key in rows:
        rows[key].update(predicted_epoch_s=round(predicted, 3), predicted_parts=parts,
                         error=error(predicted, rows[key]["measured_epoch_s"]))
        return
    t0, waited = time.monotonic(), bench.waited_s
    timing = run()
    measured = timing["measured_epoch_s"]
    rows[key] = {"predicted_epoch_s": round(predicted, 3), "measured_epoch_s": round(measured, 3),
                 "error": error(predicted, measured), "predicted_parts": parts,
                 "measured_parts": timing["measured_parts"],
                 "run_seconds": round(time.monotonic() - t0 - (bench.waited_s - waited), 1), **(extra or {})}
    print(f"{label} M={m}: predicted {predicted:.2f} s/epoch, measured {measured:.2f}", flush=True)
    bench.save()


def data_parallel(bench: Bench) -> None:
    migrate_embedded(bench.doc)
    spec = dp_spec(bench)
    workers = (1, 2) if bench.quick else (1, 2, 3, 4)
    for rate in RATES[:1] if bench.quick else RATES:
        rows = bench.doc.setdefault("data_parallel", {}).setdefault(rate, {})
        budget = bench.budget()
        for m in workers:
            cfg = redshift_dp_config(bench.tmp, m, spec, rate)
            measuring = str(m) not in rows and budget.take()
            if str(m) not in rows and not measuring:
                continue
            plan = bench.plan(bench.write_config(cfg), bench.tmp / f"{cfg['name']}-plan.json", "--profile", "thesis",
                              "--bandwidth", rate, *fresh(measuring))

            def run(cfg: dict = cfg, m: int = m, rate: str = rate) -> dict:
                with bench.cluster(bench.tmp / f".cluster-dp-{rate}-{m}", m + 2, rate) as cluster:
                    return epoch_timing(cluster.submit(cfg))

            dp_cell(bench, rows, m, plan["scaling"][str(m)], run, f"data parallel {rate}",
                    {"nodes": m + 2})


def shape_ps_link(state: Path, run_dir: Path, rate: str, timeout_s: float = 600) -> dict:
    """Once TFoS has placed the PS (the run's cluster_info.json), shape that node's link to ``rate`` both
    ways (its tbf, as ``ddl cluster up`` made it); returns which node and when."""
    from ddl_commodity.cluster.netns import TBF_BURST_S, TBF_MIN_BURST_BYTES, tc_binary
    from ddl_commodity.resources.profiles import rate_bps
    from ddl_commodity.runs import read_cluster_info

    t0 = time.monotonic()
    while not (ps := [n for n in read_cluster_info(run_dir) if n["job_name"] == "ps"]):
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"{run_dir}: the PS was not placed within {timeout_s:.0f} s")
        time.sleep(0.2)
    nodes = json.loads((state / "cluster.json").read_text())["nodes"]
    node = next(n for n in nodes if n["address"] == ps[0]["host"])
    burst = str(max(TBF_MIN_BURST_BYTES, int(rate_bps(rate) / 8 * TBF_BURST_S)))
    tbf = ["root", "handle", "10:", "tbf", "rate", rate, "burst", burst, "latency", "50ms"]
    tc = tc_binary() or "tc"
    for where in (["qdisc", "replace", "dev", node["host_veth"]],
                  ["-n", node["namespace"], "qdisc", "replace", "dev", node["interface"]]):
        subprocess.run([tc, *where, *tbf], check=True, capture_output=True, text=True)
    return {"ps_node": node["name"], "ps_shaped_after_s": round(time.monotonic() - t0, 1)}


def ps_bound(bench: Bench) -> None:
    from dataclasses import replace

    from ddl_commodity.experiments.registry import load
    from ddl_commodity.planner.costs import LayerCosts
    from ddl_commodity.planner.plan import data_parallel_task, target_cluster
    from ddl_commodity.planner.scaling import predict_workers
    from ddl_commodity.planner.transport import TransportCosts
    from ddl_commodity.resources.profiles import rate_bps

    spec = dp_spec(bench)
    rate = RATES[0]
    rows = bench.doc.setdefault("ps_bound", {})
    budget = bench.budget()
    for m in PS_BOUND_WORKERS[:1] if bench.quick else PS_BOUND_WORKERS:
        cfg = redshift_dp_config(bench.tmp, m, spec, "psbound")
        path = bench.write_config(cfg)
        measuring = str(m) not in rows and budget.take()
        if str(m) not in rows and not measuring:
            continue
        plan = bench.plan(path, bench.tmp / f"{cfg['name']}-plan.json", "--profile", "thesis", "--bandwidth", rate,
                          *fresh(measuring))
        # the planner's own model with the PS's link at its rate: the costs and transport ddl plan measured
        experiment, run_cfg = load(path)
        transport = TransportCosts(**plan["transport"])
        target = target_cluster(run_cfg, "thesis", rate, m, LATENCY_S, transport)
        cluster = replace(target.cluster, ps_bandwidth_bps=rate_bps(PS_BOUND_RATE))
        task = data_parallel_task(experiment, run_cfg, LayerCosts(**plan["costs"]), plan["weights"],
                                  plan["feed_efficiency"])
        predicted = predict_workers(task, m, cluster).to_dict()
        shaped: dict = {}

        def run(cfg: dict = cfg, m: int = m, shaped: dict = shaped) -> dict:
            state = bench.tmp / f".cluster-psbound-{m}"

            def shape(run_dir: Path) -> None:
                shaped.update(shape_ps_link(state, run_dir, PS_BOUND_RATE))

            with bench.cluster(state, m + 2, rate) as netns:
                run_dir = netns.submit(cfg, during=shape)
            if not shaped:
                raise RuntimeError(f"{cfg['name']}: the PS's link was not shaped")
            return epoch_timing(run_dir)

        dp_cell(bench, rows, m, predicted, run, f"PS-bound ({PS_BOUND_RATE} at the PS)",
                {"nodes": m + 2, "ps_rate": PS_BOUND_RATE, "rate": rate})
        if str(m) in rows:
            rows[str(m)].update(shaped)
            bench.save()


def scaling(bench: Bench) -> None:
    """The planner's curve for the thesis's redshift task on the thesis profile (a prediction, no run)."""
    cfg = yaml.safe_load((REPO / SCALING_CONFIG).read_text())
    cfg.update(name="scaling-redshift-15k-disjoint", data={**cfg["data"], "cache_dir": str(bench.tmp / "data")})
    cfg.pop("cluster", None)
    out = bench.tmp / "scaling-plan.json"
    plan = bench.plan(bench.write_config(cfg), out, "--profile", "thesis")
    curve = plan["scaling"]
    bench.doc.setdefault("scaling", {})["thesis"] = {
        "config": SCALING_CONFIG, "s": cfg["ps"]["s"], "target_passes": plan["target_passes"],
        "cluster": plan["cluster"], "break_even_workers": plan["break_even_workers"],
        "epoch_s_by_workers": {m: p["epoch_s"] for m, p in curve.items()},
        "time_to_target_s_by_workers": {m: p["time_to_target_s"] for m, p in curve.items()},
        "bound_by_workers": {m: p["bound"] for m, p in curve.items()},
    }
    shutil.copyfile(out.with_suffix(".png"), bench.out.with_name(f"{bench.out.stem}_scaling.png"))
    print(f"scaling on the thesis profile: break-even {plan['break_even_workers']} workers", flush=True)
    bench.save()


RUNNERS: dict[str, Callable[[Bench], None]] = {
    "validation": validation, "docker": docker, "user_models": user_models, "data_parallel": data_parallel,
    "ps_bound": ps_bound, "scaling": scaling}


def report(doc: dict) -> None:
    for rate, v in doc.get("validation", {}).items():
        print(f"\n{rate}: median |error| {v.get('step_time_median_abs_error')}, spearman {v.get('spearman')}, "
              f"pick / best thesis {v.get('pick_vs_best_thesis')}")
        print(table(["scheme", "predicted s", "measured s"],
                    [(k, r["predicted_s"], r["measured_s"]) for k, r in v.get("schemes", {}).items()]))
    for name, v in doc.get("user_models", {}).items():
        print(f"\n{name}: median |error| {v.get('step_time_median_abs_error')}")
    for label, rows in [*((f"data parallel {r}", v) for r, v in doc.get("data_parallel", {}).items()),
                        ("PS-bound", doc.get("ps_bound", {}))]:
        if rows:
            print(f"\n{label}")
            print(table(["M", "predicted s/epoch", "measured", "error"],
                        [(m, r["predicted_epoch_s"], r["measured_epoch_s"], r["error"]) for m, r in rows.items()]))
    for profile, v in doc.get("scaling", {}).items():
        print(f"\nscaling on {profile}: break-even {v['break_even_workers']} workers")


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated sections (default all): {', '.join(SECTIONS)}")
    parser.add_argument("--max-cells", type=int, help="measure at most this many new cells per section (default all)")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    out = Path(args.out)
    doc = json.loads(out.read_text()) if out.is_file() else {}
    doc.update({"benchmark": NAME, "mode": "quick" if args.quick else "full", "latency_s": LATENCY_S})
    if not args.only or "environment" not in doc:  # a run of some sections keeps the whole run's record
        doc["environment"] = environment()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ddl-bench-planner-") as name:
        bench = Bench(doc, out, Path(name), args.quick, args.max_cells)
        try:
            for section in sections:
                print(f"== {section}", flush=True)
                doc.setdefault("environments", {})[section] = environment()  # where each section last ran
                RUNNERS[section](bench)
        finally:
            doc["seconds"] = round(time.monotonic() - started + doc.get("seconds", 0.0), 1)
            bench.save()
    report(doc)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
