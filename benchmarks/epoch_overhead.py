"""Benchmark 7: how much longer is a Spark-fed worker's epoch than a single process's over the same samples?

The redshift experiment, the same data, model, batch size and seed, run twice side by side
with ``ddl run``:

* **single** - ``training.mode: single``: one process, its own compiled train step over NumPy arrays in
  memory, scored on the validation rows after every epoch;
* **worker** - ``training.mode: data_parallel`` with one worker (s = 1): the whole data-parallel path, Spark
  input (the feed's bundles through shared memory), the staleness-weighted PS (a push and a pull every epoch)
  and the worker's two scores per epoch (its own replica, then the global model it adopted).

Both on the same CPU share, twice: on the thesis profile (``configs/clusters/thesis.yaml``: every node d
cores, here d = 0.4; the single process is put in a control group of its own with the same share and the
same TensorFlow thread counts as a node), both runs at once, so that both see the machine at the same speed
(3 + 1 nodes of 0.4 core fit in 2 cores); and unisolated (every process may use the whole machine), one
after the other. Per
epoch: the median over epochs 2.. (the first is TensorFlow's tracing) of ``seconds`` - for the worker the
time from its previous epoch's end to this one's, so every wait for data, the push and both scores are in -
and of the training steps alone. ``ratio_worker_epoch_to_single_epoch`` is worker over single on the
profile (goal <= 1.15): the median over ``--pairs`` side-by-side pairs (3 in full mode; every pair's ratio
is in ``..._by_pair``), because a shared machine's speed moves from one pair to the next: the single side
alone can differ by a quarter at the same settings. ``..._unisolated`` is one pair without isolation.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import yaml

from benchmarks._common import base_parser, environment, table, write_json

NAME = "epoch_overhead"
SHARE = 0.4  # d of the thesis profile on a 2-core machine; the single process gets the same


def run_config(mode: str, profile: str | None, spec: dict, tmp: Path) -> dict:
    """The redshift config of one side: ``single`` or a one-worker ``data_parallel`` run."""
    return {
        "experiment": "redshift", "name": f"{mode}-{profile or 'unisolated'}", "seed": 7,
        "data": {"samples": spec["samples"], "validation_fraction": 0.1, "cache_dir": str(tmp / "data")},
        "model": {"filters": spec["filters"], "kernel_size": 8, "dropout": 0.0},
        "training": {"mode": mode, "workers": 1, "epochs": spec["epochs"], "batch_size": spec["batch_size"],
                     "learning_rate": 0.001, "data_distribution": "same"},
        "ps": {"s": 1, "staleness": "inverse"},
        "cluster": {"profile": profile} if profile and mode == "data_parallel" else {},
        "output": {"runs_dir": str(tmp / "runs")},
    }


def epoch_stats(records: list[dict]) -> dict:
    """Median seconds per epoch and in training steps over epochs 2.. of one run's records.

    A worker's record has ``train_seconds``; a single run's has its training's start and end times.
    """
    later = [r for r in records if r["epoch"] > 1]
    if not later:
        raise ValueError("need at least 2 epochs: the first is TensorFlow's tracing and is left out")
    train = [r["train_seconds"] if "train_seconds" in r else r["train_end"] - r["train_start"] for r in later]
    return {"epoch_seconds_median": float(np.median([r["seconds"] for r in later])),
            "train_seconds_median": float(np.median(train)), "epochs_measured": len(later),
            "epoch_seconds": [round(r["seconds"], 4) for r in later]}


def _single_command(argv: list[str], share: float | None):
    """``argv`` in a control group of ``share`` cores, with a node's TensorFlow thread counts (None: as is)."""
    if share is None:
        return argv, dict(os.environ), []
    from ddl_commodity.resources.cgroups import NodeLimits, create_node_groups, enter_command

    groups = create_node_groups(uuid.uuid4().hex[:12], {"single": NodeLimits(cpus=share)})
    threads = str(max(1, int(np.ceil(share))))
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=threads, TF_NUM_INTEROP_THREADS=threads, OMP_NUM_THREADS=threads)
    return enter_command(groups[0], argv), env, groups


class _Run:
    """One ``ddl run`` started in the background (the single side in its own control group on the profile)."""

    def __init__(self, mode: str, profile: str | None, spec: dict, tmp: Path, label: str = "") -> None:
        cfg = run_config(mode, profile, spec, tmp)
        self.mode, self.profile, self.name = mode, profile, f"{cfg['name']}{label}"
        path = tmp / f"{self.name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        argv = [sys.executable, "-m", "ddl_commodity.cli", "run", str(path), "--run-id", self.name, "--no-progress"]
        argv, env, self.groups = _single_command(argv, SHARE if profile and mode == "single" else None)
        self.run_dir = tmp / "runs" / self.name
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    def result(self) -> dict:
        """Wait for the run; its per-epoch statistics and wall time."""
        from ddl_commodity.resources.cgroups import remove_groups

        try:
            output, _ = self.proc.communicate(timeout=3600)
        finally:
            remove_groups(self.groups)
        if self.proc.returncode != 0:
            raise RuntimeError(f"{self.name} failed:\n{output[-3000:]}")
        stream = "single" if self.mode == "single" else "worker-0"
        records = [json.loads(line) for line in (self.run_dir / "workers" / f"{stream}.jsonl").read_text().splitlines()]
        return {"mode": self.mode, "profile": self.profile, "run_seconds": round(time.monotonic() - self.started, 1),
                **epoch_stats(records)}


def side_by_side(profile: str, spec: dict, tmp: Path, label: str = "") -> tuple[dict, dict]:
    """Both sides at once, each on its own share (one after the other, a shared machine's speed can move by
    15% between them): the single run starts once the distributed one has its TFoS nodes, so that their
    training overlaps."""
    worker = _Run("data_parallel", profile, spec, tmp, label)
    try:
        deadline = time.monotonic() + 600
        while not (worker.run_dir / "cluster_info.json").exists() and worker.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the distributed run reserved no TFoS nodes within 600 s")
            time.sleep(0.2)
        single = _Run("single", profile, spec, tmp, label)
        return single.result(), worker.result()
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()


def ratio(runs: dict[str, dict], key: str, kind: str) -> float:
    """Worker over single of the ``kind`` (``epoch`` or ``train``) median seconds of the runs ``*/key``."""
    return runs[f"worker/{key}"][f"{kind}_seconds_median"] / runs[f"single/{key}"][f"{kind}_seconds_median"]


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, help="spectra (default 1200 quick, 4000 full; 90%% trained)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default 3 quick, 6 full)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--filters", type=int, nargs=2, default=(2, 2), metavar=("F1", "F2"),
                        help="conv filter counts (default 2 2; the experiment's default network is 8 8)")
    parser.add_argument("--pairs", type=int, help="side-by-side pairs on the profile; the ratio is their "
                        "median (default 1 quick, 3 full)")
    args = parser.parse_args(argv)
    spec = {"samples": args.samples or (1200 if args.quick else 4000),
            "epochs": args.epochs or (3 if args.quick else 6), "batch_size": args.batch_size,
            "filters": list(args.filters), "pairs": args.pairs or (1 if args.quick else 3)}
    if spec["epochs"] < 2:
        parser.error("--epochs must be at least 2: the first epoch is left out")
    if spec["pairs"] < 1:
        parser.error("--pairs must be at least 1")
    env = environment()
    print(f"epoch overhead ({'quick' if args.quick else 'full'} mode): {spec}", flush=True)
    started = time.monotonic()
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="ddl-bench-epoch-") as tmp_name:
        tmp = Path(tmp_name)
        for i in range(1, spec["pairs"] + 1):
            runs[f"single/thesis/{i}"], runs[f"worker/thesis/{i}"] = side_by_side("thesis", spec, tmp, f"-{i}")
        for mode in ("single", "data_parallel"):  # unisolated, both would share the cores: one after the other
            runs[f"{'worker' if mode == 'data_parallel' else mode}/unisolated"] = _Run(mode, None, spec, tmp).result()
        for key, r in runs.items():
            print(f"{key}: {r}", flush=True)
    by_pair = {k: [ratio(runs, f"thesis/{i}", k) for i in range(1, spec["pairs"] + 1)] for k in ("epoch", "train")}
    ratios = {"thesis": {k: statistics.median(v) for k, v in by_pair.items()},
              "unisolated": {k: ratio(runs, "unisolated", k) for k in ("epoch", "train")}}
    env["load_average_1m_end"] = os.getloadavg()[0]
    document = {"benchmark": NAME, "mode": "quick" if args.quick else "full", "environment": env, "settings": spec,
                "share": SHARE, "ratio_worker_epoch_to_single_epoch": round(ratios["thesis"]["epoch"], 3),
                "ratio_worker_epoch_to_single_epoch_by_pair": [round(r, 3) for r in by_pair["epoch"]],
                "ratio_worker_epoch_to_single_epoch_unisolated": round(ratios["unisolated"]["epoch"], 3),
                "ratio_worker_train_to_single_train": round(ratios["thesis"]["train"], 3),
                "ratio_worker_train_to_single_train_by_pair": [round(r, 3) for r in by_pair["train"]],
                "ratio_worker_train_to_single_train_unisolated": round(ratios["unisolated"]["train"], 3),
                "runs": runs, "seconds": round(time.monotonic() - started, 1)}
    write_json(Path(args.out), document)
    print(table(["run", "median epoch s", "median train s", "epochs", "run s"],
                [(k, v["epoch_seconds_median"], v["train_seconds_median"], v["epochs_measured"], v["run_seconds"])
                 for k, v in runs.items()]))
    print(f"worker / single per epoch: {ratios['thesis']['epoch']:.3f} (thesis profile, {SHARE} core each, the "
          f"median of {', '.join(f'{r:.3f}' for r in by_pair['epoch'])}), "
          f"{ratios['unisolated']['epoch']:.3f} (unisolated); training steps alone: "
          f"{ratios['thesis']['train']:.3f}, {ratios['unisolated']['train']:.3f}")
    print(f"wrote {args.out} ({document['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
