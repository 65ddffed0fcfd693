"""The single-machine baseline ("sequential CNN", thesis 5.3): real Keras training, no Spark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ddl_commodity.runs import read_jsonl


def board_scalars(logdir: Path) -> dict[str, list]:
    """Tag -> scalar events of the TensorBoard event files in ``logdir``, read by TensorBoard's own loader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def test_single_machine_run_writes_a_complete_run(tmp_path: Path) -> None:
    cfg = {
        "name": "single", "seed": 3,
        "data": {"samples": 300, "validation_fraction": 0.2, "cache_dir": str(tmp_path / "data")},
        "model": {"filters": [2, 2], "dropout": 0.0},
        "training": {"mode": "single", "epochs": 4, "batch_size": 16, "learning_rate": 0.003},
        "output": {"runs_dir": str(tmp_path / "runs")},
    }
    path = tmp_path / "single.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "run", str(path), "--run-id", "s",
                           "--no-progress"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "runs" / "s"
    records = read_jsonl(run_dir / "workers" / "single.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["loss"] < records[0]["loss"]
    assert all(r["val_accuracy"] is not None for r in records)
    assert all(r["val_dz_median"] >= 0 and 0 <= r["val_within_1"] <= r["val_within_5"] <= 1 for r in records)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final"]["val_dz_nmad_expected"] == records[-1]["val_dz_nmad_expected"]
    assert summary["trivial_estimator"]["dz_median"] > 0
    assert summary["mode"] == "single" and summary["train_samples"] == 240
    assert set(summary["epochs_to_plateau"]) == {"accuracy/patience=1/min_delta=0.001",
                                                 "accuracy/patience=3/min_delta=0.0001"}
    assert (run_dir / "model.keras").is_file() and (run_dir / "curves.png").is_file()
    board = board_scalars(run_dir / "tensorboard" / "single")
    assert [e.step for e in board["validation/dz_median"]] == [1, 2, 3, 4]
    assert [e.value for e in board["train/loss"]] == pytest.approx([r["loss"] for r in records], rel=1e-6)
    assert "single" in proc.stdout and "results:" in proc.stdout
    assert "held-out |dz|/(1+z): median" in proc.stdout and "trivial estimator, always z = " in proc.stdout
    report = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "report", str(run_dir)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert report.returncode == 0 and "Epochs to a plateau" in report.stdout
    assert "| trivial: always z = " in report.stdout and "median |dz|/(1+z) |" in report.stdout
    assert (run_dir / "report.md").is_file()
