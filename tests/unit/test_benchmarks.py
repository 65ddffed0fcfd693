"""The benchmarks in ``benchmarks/`` run end to end in ``--quick`` mode and write well-formed JSON.

Each runs as a user would (``python -m benchmarks.<name> --quick --out FILE``, a subprocess from the repo
root); the JSON must hold the environment, every measurement and the ratios, and every figure must be a
finite positive number.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_benchmark(name: str, out: Path, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| " in proc.stdout, "no table printed"
    return json.loads(out.read_text())


def numbers(tree: object, path: str = "") -> list[tuple[str, float]]:
    """Every int/float leaf of a JSON tree with its path (booleans excluded)."""
    if isinstance(tree, dict):
        return [n for k, v in tree.items() for n in numbers(v, f"{path}.{k}")]
    if isinstance(tree, list):
        return [n for i, v in enumerate(tree) for n in numbers(v, f"{path}[{i}]")]
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return [(path, float(tree))]
    return []


def assert_all_positive(tree: object) -> None:
    found = numbers(tree)
    assert found
    bad = [(p, v) for p, v in found if not (math.isfinite(v) and v > 0)]
    assert not bad, bad


def check_environment(env: dict) -> None:
    assert env["cpu_count"] >= 1
    for package in ("tensorflow-cpu", "keras", "tensorflowonspark", "pyspark", "numpy", "grpcio"):
        assert env["versions"][package], package


def test_parameter_server_quick(tmp_path: Path) -> None:
    doc = run_benchmark("parameter_server", tmp_path / "ps.json", timeout=180)
    assert doc["benchmark"] == "parameter_server" and doc["mode"] == "quick"
    check_environment(doc["environment"])
    cells = doc["measurements"]
    assert {(c["params_target"], c["clients"]) for c in cells} == {(p, m) for p in (100_000, 1_000_000)
                                                                  for m in (1, 2)}
    for c in cells:
        assert c["s"] == c["clients"]
        assert c["timed_pushes"] == sum(c["pushes_per_client"]) >= c["clients"]
        assert c["latency"]["p90_ms"] >= c["latency"]["median_ms"]
        wire = c["wire"]
        assert wire["raw_bytes"] == 4 * c["params"]
        assert wire["request_bytes"] > wire["raw_bytes"] and wire["request_overhead_ratio"] > 1
        assert c["raw_socket"]["latency"]["n"] == c["timed_pushes"]  # same clients and rounds, all completed
        assert c["apply"]["n"] == c["rounds_requested"]
        assert_all_positive(c)
    assert set(doc["ratio_to_raw_socket"]) == {"0.1M/M=1", "0.1M/M=2", "1M/M=1", "1M/M=2"}
    assert set(doc["apply_ms"]) == {"0.1M/s=1", "0.1M/s=2", "1M/s=1", "1M/s=2"}
    for key, ratio in doc["ratio_to_raw_socket"].items():
        cell = next(c for c in cells if key == f"{c['params_target'] / 1e6:g}M/M={c['clients']}")
        assert ratio == pytest.approx(cell["latency"]["median_ms"] / cell["raw_socket"]["latency"]["median_ms"])
    assert_all_positive(doc["seconds"])


@pytest.mark.cluster
def test_feeding_quick(tmp_path: Path) -> None:
    doc = run_benchmark("feeding", tmp_path / "feeding.json", timeout=420)
    assert doc["benchmark"] == "feeding" and doc["mode"] == "quick"
    check_environment(doc["environment"])
    modes = doc["modes"]
    assert set(modes) == {"c_in_memory", "b_tensorflow_input", "a_spark_records", "c_before_bundles",
                          "a_spark_bundles", "c_after_bundles", "c_in_memory_repeat"}
    expected = doc["settings"]["samples"] * doc["settings"]["epochs"]
    for name, m in modes.items():
        assert m["samples"] == expected, name  # same number of samples everywhere
        assert_all_positive({k: v for k, v in m.items() if k != "wait_seconds"})
        assert math.isfinite(m["wait_seconds"]) and m["wait_seconds"] >= 0
    assert set(doc["ratios"]) >= {"a_records_over_c", "a_bundles_over_c", "b_over_c"}
    assert doc["ratio_spark_bundles_to_in_memory"] == doc["ratios"]["a_bundles_over_c"]
    beside = (modes["c_before_bundles"]["samples_per_s"] + modes["c_after_bundles"]["samples_per_s"]) / 2
    assert doc["ratio_spark_bundles_to_in_memory"] == pytest.approx(modes["a_spark_bundles"]["samples_per_s"] / beside)
    assert doc["ratio_spark_bundles_to_in_memory_by_workers"] == {"1": doc["ratio_spark_bundles_to_in_memory"]}
    assert_all_positive(doc["ratios"])
    assert_all_positive(doc["spark_overheads"])
    assert_all_positive(doc["c_samples_per_s"])


@pytest.mark.cluster
def test_model_parallel_traffic_quick(tmp_path: Path) -> None:
    doc = run_benchmark("model_parallel_traffic", tmp_path / "traffic.json", timeout=600)
    assert doc["benchmark"] == "model_parallel_traffic" and doc["mode"] == "quick"
    check_environment(doc["environment"])
    (cell,) = doc["measurements"]
    assert cell["scheme"] == "default" and set(cell["nodes"]) == {"ps-0", "worker-0", "worker-1", "worker-2"}
    assert_all_positive({k: v for k, v in cell.items() if k not in ("scheme", "figure", "net_method")})
    assert 0.75 < cell["ratio"] < 1.5


@pytest.mark.cluster
def test_async_vs_allreduce_quick(tmp_path: Path) -> None:
    doc = run_benchmark("async_vs_allreduce", tmp_path / "b3.json", timeout=600)
    assert doc["benchmark"] == "async_vs_allreduce" and doc["mode"] == "quick"
    check_environment(doc["environment"])
    epochs, workers = doc["settings"]["epochs"], doc["settings"]["workers"]
    assert set(doc["runs"]) == {"ps", "allreduce"}
    for name, run in doc["runs"].items():
        per_worker = run["worker_epochs"]
        assert sorted(per_worker) == [f"worker-{i}" for i in range(workers)], name
        for records in per_worker.values():
            assert [r["epoch"] for r in records] == list(range(1, epochs + 1)), name
            for r in records:
                assert 0 <= r["val_accuracy"] <= 1 and 0 <= r["accuracy"] <= 1
                assert_all_positive({k: r[k] for k in ("loss", "val_loss", "seconds", "samples")})
        assert run["job_seconds"] > 0
        curve = doc["curves"][name]
        assert [c["epoch"] for c in curve] == list(range(1, epochs + 1))
        assert all(b["seconds"] > a["seconds"] > 0 for a, b in itertools.pairwise(curve))
    # Each run's validation score is its global model's: all-reduce keeps the replicas identical, and with
    # s = M every PS worker adopts the same PS version; so all workers score the same loss every epoch.
    for name in ("allreduce", "ps"):
        per_worker = doc["runs"][name]["worker_epochs"]
        for e in range(epochs):
            losses = [per_worker[w][e]["val_loss"] for w in per_worker]
            assert max(losses) - min(losses) < 1e-4, (name, losses)
    assert all("replica_val_loss" in r for recs in doc["runs"]["ps"]["worker_epochs"].values() for r in recs)
    assert doc["runs"]["ps"]["final_model"]["ps_version"] == epochs
    # Every training sample once per epoch in both runs (the quick sizes divide evenly by M).
    train = doc["settings"]["samples"] - round(doc["settings"]["samples"] * 0.1)
    assert train % workers == 0
    for name in ("ps", "allreduce"):
        assert sum(recs[0]["samples"] for recs in doc["runs"][name]["worker_epochs"].values()) == train, name
    assert {t["metric"] for t in doc["targets"]} == {"val_accuracy", "val_loss"}
    for t in doc["targets"]:
        assert_all_positive({k: t[k] for k in ("ps", "allreduce", "time_ratio_allreduce_over_ps")})
    assert_all_positive(doc["median_epoch_seconds"])
    assert doc["epoch_time_ratio_allreduce_over_ps"] > 0
    png = (tmp_path / doc["figure"]).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_epoch_overhead_reads_both_kinds_of_run(tmp_path: Path) -> None:
    """Benchmark 7's figures come from the runs' own epoch records (its full runs take minutes: not run here)."""
    import yaml

    from benchmarks.epoch_overhead import epoch_stats, run_config
    from ddl_commodity.experiments.registry import load_config

    worker = [{"epoch": e, "seconds": s, "train_seconds": t} for e, s, t in [(1, 9.0, 8.0), (2, 1.3, 1.1),
                                                                             (3, 1.5, 1.2), (4, 1.4, 1.0)]]
    single = [{"epoch": e, "seconds": s, "train_start": 100.0 + e, "train_end": 100.0 + e + t}
              for e, s, t in [(1, 5.0, 4.5), (2, 1.0, 0.9), (3, 1.2, 0.5)]]
    w, s = epoch_stats(worker), epoch_stats(single)
    assert (w["epoch_seconds_median"], w["train_seconds_median"], w["epochs_measured"]) == (1.4, 1.1, 3)
    assert s["epoch_seconds_median"] == pytest.approx(1.1) and s["train_seconds_median"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="at least 2 epochs"):
        epoch_stats(worker[:1])
    spec = {"samples": 400, "epochs": 2, "batch_size": 32, "filters": [2, 2]}
    for mode, profile in [("single", "thesis"), ("data_parallel", "thesis"), ("data_parallel", None)]:
        path = tmp_path / f"{mode}-{profile}.yaml"
        path.write_text(yaml.safe_dump(run_config(mode, profile, spec, tmp_path)))
        cfg = load_config(path)  # what `ddl run` validates
        assert cfg.training.mode == mode and cfg.training.workers == 1 and cfg.ps.s == 1
        assert cfg.cluster.profile == (profile if mode == "data_parallel" else None)


def test_feeding_combines_trainers_side_by_side() -> None:
    """Several trainers count as one: all samples over the span from the first batch to the last step."""
    from benchmarks.feeding import combined

    a = {"samples": 100, "steps": 4, "train_seconds": 1.0, "wait_seconds": 0.5, "first": 10.0, "end": 12.0,
         "samples_per_s": 50.0, "end_to_end_seconds": 2.5, "fetch_seconds": 0.1, "convert_seconds": 0.01}
    b = {**a, "first": 11.0, "end": 15.0, "samples_per_s": 25.0, "end_to_end_seconds": 4.5}
    c = combined([a, b])
    assert (c["samples"], c["steps"], c["seconds"], c["samples_per_s"]) == (200, 8, 5.0, 40.0)
    assert c["train_seconds"] == 2.0 and c["fetch_seconds"] == pytest.approx(0.2)
    assert c["end_to_end_seconds"] == 4.5 and c["per_trainer_samples_per_s"] == [50.0, 25.0]
    del b["fetch_seconds"]
    assert "fetch_seconds" not in combined([a, b])


def test_planner_benchmark_splits_a_data_parallel_epoch_into_its_parts(tmp_path: Path) -> None:
    """The planner's data-parallel cells keep, beside the epoch, the medians of its training, its push and pull,
    and the rest, from the workers' epoch records (the first epoch left out)."""
    from benchmarks.planner import epoch_timing

    (tmp_path / "workers").mkdir()
    for w, rows in enumerate([[(1, 30.0, 9.0, 5.0), (2, 20.0, 10.0, 8.0), (3, 22.0, 11.0, 9.0)],
                              [(1, 31.0, 9.0, 6.0), (2, 21.0, 10.0, 9.0), (3, 23.0, 12.0, 9.0)]]):
        (tmp_path / "workers" / f"worker-{w}.jsonl").write_text("".join(
            json.dumps({"epoch": e, "seconds": s, "train_seconds": t, "sync_seconds": p}) + "\n"
            for e, s, t, p in rows))
    timing = epoch_timing(tmp_path)
    assert timing["measured_epoch_s"] == pytest.approx(21.5)
    assert timing["measured_parts"] == {"train_s": 10.5, "sync_s": 9.0, "other_s": 2.0}
