"""``ddl compare``: differing config keys, final metrics side by side, overlaid curves; bad input exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from ddl_commodity.report.compare import flatten


def make_run(root: Path, name: str, batch: int, val_loss: float, epochs: int = 3) -> Path:
    run = root / name
    (run / "workers").mkdir(parents=True)
    config = {"experiment": "redshift", "name": "quickstart", "seed": 7,
              "training": {"workers": 2, "batch_size": batch, "epochs": epochs}, "ps": {"s": 2}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "status.json").write_text(json.dumps({"state": "succeeded"}))
    (run / "summary.json").write_text(json.dumps({
        "name": "quickstart", "experiment": "redshift", "mode": "data_parallel", "description": "2 workers",
        "data": "data.h5", "wall_seconds": 80.5, "final": {
            "val_loss": val_loss, "val_accuracy": 0.2, "val_dz_median": 0.004, "ps_version": 3}}))
    for w in ("worker-0", "worker-1"):
        lines = [json.dumps({"worker": w, "epoch": e, "loss": 7.0 - e, "accuracy": 0.1 * e, "val_dz_median": 0.1 / e})
                 for e in range(1, epochs + 1)]
        (run / "workers" / f"{w}.jsonl").write_text("\n".join(lines) + "\n")
    return run


def ddl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddl_commodity.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_compare_tabulates_what_differs_and_overlays_curves(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", batch=32, val_loss=5.5)
    b = make_run(tmp_path, "b", batch=64, val_loss=4.25)
    proc = ddl("compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    assert "| `training.batch_size` | 32 | 64 |" in proc.stdout
    assert "`seed`" not in proc.stdout and "`training.workers`" not in proc.stdout  # equal keys are left out
    assert "| val_loss | 5.5 | 4.25 |" in proc.stdout and "| val_dz_median | 0.004 | 0.004 |" in proc.stdout
    png = (tmp_path / "cmp" / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert (tmp_path / "cmp" / "compare.md").read_text().startswith("# Comparison of 2 runs")


def test_identical_configs_are_said_to_be_identical(tmp_path: Path) -> None:
    a, b = make_run(tmp_path, "a", 32, 5.0), make_run(tmp_path / "x", "a", 32, 5.0)
    proc = ddl("compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0 and "The configurations are identical." in proc.stdout
    assert f"| {a} | {b} |" in proc.stdout  # two runs named alike are told apart by their paths


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", 32, 5.0)
    for args in ([str(a)], [str(a), str(tmp_path / "missing")]):
        proc = ddl("compare", *args, "--out", str(tmp_path / "cmp"))
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "cmp").exists()


def test_flatten_joins_nested_keys() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": 1, "a.c.d": [1, 2], "e": None}
