"""Benchmark 4: for every split scheme, measured bytes per training step vs the analytical minimum.

Each scheme of ``configs/splits/`` runs as a short model-parallel land-cover run (``ddl run``, embedded
cluster, 1 PS + 3 workers, the same tiny synthetic scene, model and batch for every scheme). Measured: per
node, network bytes in and out per training step (the node sampler: interface counters for ``--netns``
nodes, otherwise the node's own TCP sockets). Analytical minimum, from tensor shapes: activations forward
and their gradients backward at every split boundary, plus each node's weight reads from the PS and its
gradient writes back (``models.splits.boundary_traffic``). Ratio = measured / analytical, per node and for
the whole cluster; > 1 is protocol overhead (gRPC/HTTP2 framing, TCP, TFoS and heartbeat traffic).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks._common import base_parser, environment, table, write_json

REPO = Path(__file__).resolve().parents[1]
QUICK_SCHEMES = ("default",)


def run_config(tmp: Path, scheme: str, batch: int, steps: int) -> dict:
    return {
        "experiment": "landcover", "name": f"traffic-{scheme}", "seed": 5,
        "data": {"synthetic_scale": 0.05, "patches_per_class": 60, "validation_fraction": 0.1,
                 "cache_dir": str(tmp / "data")},
        "training": {"mode": "model_parallel", "split": scheme, "workers": 3, "epochs": 2, "batch_size": batch,
                     "steps_per_epoch": steps},
        "monitor": {"interval_s": 0.25},
        "output": {"runs_dir": str(tmp / "runs")},
    }


def measure_scheme(tmp: Path, scheme: str, batch: int, steps: int) -> dict:
    cfg = run_config(tmp, scheme, batch, steps)
    path = tmp / f"{scheme}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "run", str(path), "--run-id", cfg["name"],
                           "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"scheme {scheme}: ddl run failed\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    summary = json.loads((tmp / "runs" / cfg["name"] / "summary.json").read_text())
    nodes = {}
    for node, check in summary["traffic_check"].items():
        m = summary["nodes"][node]
        nodes[node] = {
            "rx_bytes_per_step": check["rx_measured"], "tx_bytes_per_step": check["tx_measured"],
            "rx_analytical": check["rx_computed"], "tx_analytical": check["tx_computed"],
            "cpu_seconds_per_step": m["cpu_seconds_per_step"], "seconds_per_step": m["seconds_per_step"],
        }
    measured = sum(n["rx_bytes_per_step"] for n in nodes.values())
    analytical = sum(n["rx_analytical"] for n in nodes.values())
    computed = summary["boundary_bytes_per_step"]
    return {
        "scheme": scheme, "figure": summary["scheme"]["figure"], "batch": batch,
        "net_method": summary["net_method"], "nodes": nodes,
        "cluster_bytes_per_step": measured, "cluster_analytical_bytes_per_step": analytical,
        "ratio": measured / analytical if analytical else None,
        "activation_bytes_per_step": computed["activation_bytes_per_step"],
        "weight_bytes_per_step": computed["weight_bytes_per_step"],
        "run_seconds": time.monotonic() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("model_parallel_traffic", __doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=50, help="batch size (thesis: 50)")
    args = parser.parse_args(argv)
    from ddl_commodity.models.splits import available_schemes

    schemes = QUICK_SCHEMES if args.quick else tuple(available_schemes())
    steps = 10 if args.quick else 30
    env = environment()
    results = []
    with tempfile.TemporaryDirectory(prefix="ddl-bench-traffic-") as tmp:
        for scheme in schemes:
            print(f"scheme {scheme} ...", flush=True)
            results.append(measure_scheme(Path(tmp), scheme, args.batch, steps))
    rows = []
    for r in results:
        rows.append([r["scheme"], r["figure"], f"{r['cluster_bytes_per_step'] / 1e6:.2f}",
                     f"{r['cluster_analytical_bytes_per_step'] / 1e6:.2f}", f"{r['ratio']:.3f}",
                     f"{r['activation_bytes_per_step'] / 1e6:.2f}", f"{r['weight_bytes_per_step'] / 1e6:.2f}"])
    print(table(["scheme", "figure", "measured MB/step (all nodes in)", "analytical MB/step", "ratio",
                 "activations MB/step", "weights MB/step"], rows))
    write_json(args.out, {"benchmark": "model_parallel_traffic", "mode": "quick" if args.quick else "full",
                          "environment": env, "batch": args.batch, "steps_per_epoch": steps,
                          "measurements": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
