"""Cluster fidelity: do the nodes of a one-machine cluster behave like separate PCs?

Two measurements, side by side in one run:

* **Fairness** - a cluster of 4 nodes (``LocalStandaloneCluster``, master + 3 workers), each given a CPU share
  of 0.4 core in its own control group; a CPU-bound loop runs on every node at once. Each node's CPU time over
  the window (its group's own accounting) against its quota: ``cpu_share_error_max`` is the largest
  |measured - quota| / quota (goal <= 0.10).
* **3 workers vs 1** (thesis Fig 5.4: "3 workers reach stable accuracy in 25% less time than 1", which needs
  every worker to have a PC of its own) - the redshift experiment, ``same`` data (every worker trains on the
  whole training set), ``ddl run`` with 1 and with 3 workers, on the thesis profile
  (``configs/clusters/thesis.yaml``: every node d cores, here d = 0.4) and without isolation (today's default:
  every node shares the machine). Per-epoch training time = the median over workers and epochs (the first
  epoch, TensorFlow's warm-up, left out) of ``train_seconds``, the time a worker spends in its training steps.
  ``epoch_time_ratio_3w_1w`` is 3 workers over 1 on the profile (goal <= 1.15: a worker's epoch does not get
  slower because others train too), ``epoch_time_ratio_3w_1w_unisolated`` the same without isolation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks._common import base_parser, environment, table, write_json

NAME = "cluster_fidelity"
SHARE = 0.4
FAIRNESS_NODES = 4
BUSY_LOOP = [sys.executable, "-c", "while True: pass"]


def fairness(seconds: float, state_dir: Path) -> dict:
    """Every node of a 4-node cluster at ``SHARE`` runs a busy loop; what each gets over ``seconds``."""
    from ddl_commodity.cluster.local import LocalStandaloneCluster
    from ddl_commodity.resources.cgroups import NodeLimits, enter_command

    with LocalStandaloneCluster(workers=FAIRNESS_NODES - 1, limits=NodeLimits(cpus=SHARE), state_dir=state_dir) as c:
        groups = c.state.groups()
        loops = [subprocess.Popen(enter_command(g, BUSY_LOOP)) for g in groups.values()]
        try:
            time.sleep(1.0)  # the loops have joined their groups and started
            before = {n: g.usage() for n, g in groups.items()}
            time.sleep(seconds)
            after = {n: g.usage() for n, g in groups.items()}
        finally:
            for p in loops:
                p.kill()
                p.wait()
    nodes = {}
    for n in groups:
        got = (after[n].cpu_seconds - before[n].cpu_seconds) / (after[n].time - before[n].time)
        nodes[n] = {"quota": SHARE, "measured": round(got, 4), "error": round(abs(got - SHARE) / SHARE, 4),
                    "throttled_seconds": round(after[n].throttled_seconds - before[n].throttled_seconds, 3)}
    return {"seconds": seconds, "nodes": nodes, "cpu_share_error_max": max(v["error"] for v in nodes.values())}


def redshift_config(workers: int, profile: str | None, spec: dict, tmp: Path) -> dict:
    return {
        "experiment": "redshift", "name": f"{workers}w-{profile or 'unisolated'}", "seed": 7,
        "data": {"samples": spec["samples"], "validation_fraction": 0.1, "cache_dir": str(tmp / "data")},
        "model": {"filters": [4, 4], "kernel_size": 8, "dropout": 0.1},
        "training": {"mode": "data_parallel", "workers": workers, "epochs": spec["epochs"], "batch_size": 32,
                     "learning_rate": 0.001, "data_distribution": "same"},
        "ps": {"s": workers, "staleness": "inverse"},
        "cluster": {"profile": profile} if profile else {},
        "output": {"runs_dir": str(tmp / "runs")},
    }


def epoch_times(workers: int, profile: str | None, spec: dict, tmp: Path) -> dict:
    """One ``ddl run``; its per-epoch training and wall times (first epoch left out) and its wall time."""
    cfg = redshift_config(workers, profile, spec, tmp)
    path = tmp / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "run", str(path), "--run-id", cfg["name"],
                           "--no-progress"], capture_output=True, text=True, check=False, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{cfg['name']} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    run_dir = tmp / "runs" / cfg["name"]
    records = [json.loads(line) for f in sorted((run_dir / "workers").glob("worker-*.jsonl"))
               for line in f.read_text().splitlines()]
    later = [r for r in records if r["epoch"] > 1]
    return {"workers": workers, "profile": profile, "run_seconds": round(time.monotonic() - started, 1),
            "train_seconds_median": float(np.median([r["train_seconds"] for r in later])),
            "epoch_seconds_median": float(np.median([r["seconds"] for r in later])),
            "epochs_measured": len(later)}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, help="spectra (default 600 quick, 2000 full)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default 3 quick, 5 full)")
    args = parser.parse_args(argv)
    spec = {"samples": args.samples or (600 if args.quick else 2000), "epochs": args.epochs or (3 if args.quick else 5)}
    env = environment()
    print(f"cluster fidelity ({'quick' if args.quick else 'full'} mode): {spec}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ddl-bench-fidelity-") as tmp_name:
        tmp = Path(tmp_name)
        fair = fairness(3.0 if args.quick else 10.0, tmp / "fairness")
        print(f"fairness: largest error {fair['cpu_share_error_max']:.3f}", flush=True)
        runs = {}
        for profile in ("thesis", None):
            for workers in (1, 3):
                key = f"{workers}w/{profile or 'unisolated'}"
                runs[key] = epoch_times(workers, profile, spec, tmp)
                print(f"{key}: {runs[key]}", flush=True)
    ratio = {p: runs[f"3w/{p}"]["train_seconds_median"] / runs[f"1w/{p}"]["train_seconds_median"]
             for p in ("thesis", "unisolated")}
    env["load_average_1m_end"] = os.getloadavg()[0]
    document = {"benchmark": NAME, "mode": "quick" if args.quick else "full", "environment": env, "settings": spec,
                "cpu_share_error_max": fair["cpu_share_error_max"],
                "epoch_time_ratio_3w_1w": round(ratio["thesis"], 3),
                "epoch_time_ratio_3w_1w_unisolated": round(ratio["unisolated"], 3),
                "fairness": fair, "runs": runs, "seconds": round(time.monotonic() - started, 1)}
    write_json(Path(args.out), document)
    print(table(["run", "median train s / epoch", "median epoch s", "run s"],
                [(k, v["train_seconds_median"], v["epoch_seconds_median"], v["run_seconds"]) for k, v in runs.items()]))
    print(f"epoch_time_ratio_3w_1w {ratio['thesis']:.3f} (thesis profile), {ratio['unisolated']:.3f} (unisolated); "
          f"cpu_share_error_max {fair['cpu_share_error_max']:.3f}")
    print(f"wrote {args.out} ({document['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
