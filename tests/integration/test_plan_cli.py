"""`ddl plan` as a user runs it: real TensorFlow profiling of the layers (in a fresh cache), every shipped
scheme predicted, a better split found and written in the configs/splits format; a data-parallel config
gets seconds per epoch for 1-64 workers and the break-even. No Spark cluster, but tens of seconds of
profiling: cluster tier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ddl_commodity.experiments.registry import load
from ddl_commodity.models.splits import available_schemes, load_scheme

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.cluster


def plan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "plan", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def test_plan_predicts_every_scheme_and_writes_a_better_split(tmp_path: Path) -> None:
    # The quick config with the narrower layers of the land-cover cluster tests: profiling the thesis-size
    # model costs 38 CPU-s, and nothing here depends on the filter counts.
    doc = yaml.safe_load((REPO / "configs" / "landcover-quick.yaml").read_text())
    doc["model"] = {"rgb_filters": [8, 16, 16], "hsi_filters": [8, 16, 32], "fc_units": [128, 64]}
    config = tmp_path / "landcover-quick.yaml"
    config.write_text(yaml.safe_dump(doc))
    out = tmp_path / "planned.yaml"
    proc = plan(tmp_path, str(config), "--profile", "thesis", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # TensorFlow's start-up lines stay off the console
    assert "each node 0.4 core, links 400 Mbit/s" in proc.stdout
    doc = json.loads(out.with_suffix(".json").read_text())
    assert sorted(doc["schemes"]) == available_schemes()
    costs = doc["costs"]
    assert costs["batch"] == 50 and costs["forward"]["hsi_conv1"] > costs["forward"]["rgb_conv1"] > 0
    experiment, cfg = load(config)
    scheme = load_scheme(out, experiment.blocks(cfg))  # what `training.split: planned.yaml` will load
    assert out.read_text().startswith("# Found by `ddl plan ")
    planned = doc["planned"]
    assert planned["method"].startswith("exhaustive")
    assert {scheme.layers[layer] for layer in experiment.blocks(cfg)["merge"]} == {planned["blocks"]["merge"]}
    # the search's space holds every block-level scheme, so its pick predicts no slower than them
    assert planned["step_s"] <= min(doc["schemes"][s]["step_s"] for s in ("default", "single", "fig6_7"))
    assert {"worker:0", "ps:0"} <= set(planned["nodes"]) <= {"worker:0", "worker:1", "worker:2", "ps:0"}
    for node in planned["nodes"].values():  # the pick may leave a worker idle: it is then not listed
        assert 0 <= node["cpu_fraction"] <= 1.0
        assert 0.5 * 2**30 < node["memory_bytes"] <= 2 * 2**30
    # the slower link makes steps slower, the same layer timings come from the cache
    slow = plan(tmp_path, str(config), "--profile", "thesis", "--bandwidth", "40mbit", "--out",
                str(tmp_path / "slow.yaml"))
    assert slow.returncode == 0, slow.stderr
    slow_doc = json.loads((tmp_path / "slow.json").read_text())
    assert slow_doc["costs"] == costs
    # A scheme that splits the model waits for activations on every step; `single` only reads weights and
    # writes gradients, which its compute can hide: on a core half as fast its step need not change.
    for s, predicted in doc["schemes"].items():
        if s == "single":
            assert slow_doc["schemes"][s]["step_s"] >= predicted["step_s"]
        else:
            assert slow_doc["schemes"][s]["step_s"] > predicted["step_s"], s


def test_plan_of_a_data_parallel_config_predicts_epochs_per_worker_count(tmp_path: Path) -> None:
    cfg = {"experiment": "redshift", "name": "dp", "seed": 1,
           "data": {"samples": 400, "validation_fraction": 0.1, "cache_dir": str(tmp_path / "data")},
           "model": {"filters": [2, 2], "dropout": 0.0},
           "training": {"mode": "data_parallel", "workers": 4, "epochs": 2, "batch_size": 16,
                        "data_distribution": "disjoint"},
           "ps": {"s": 4}}  # synchronous: the PS waits for min(s, M) pushes, so an exchange grows with M
    path = tmp_path / "dp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = plan(tmp_path, str(path), "--profile", "thesis")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "dp-plan.json").read_text())
    rows = doc["data_parallel"]
    assert sorted(rows) == ["1", "2", "3", "4"] and doc["samples"] == 360
    # disjoint data: half the training steps each with 2 workers; the held-out scoring stays the same
    assert rows["2"]["compute_s"] < 0.75 * rows["1"]["compute_s"]
    assert rows["4"]["exchange_s"] > rows["1"]["exchange_s"]
    curve = doc["scaling"]
    assert sorted(map(int, curve)) == list(range(1, 65))
    best = doc["break_even_workers"]
    assert curve[str(best)]["time_to_target_s"] == min(p["time_to_target_s"] for p in curve.values())
    t = doc["transport"]
    assert t["send_s_per_byte"] > 0 and t["remote_call_s"] > 0 and t["send_s_per_tensor"] > 0
    assert f"break-even: {best} worker(s)" in proc.stdout
    assert (tmp_path / "dp-plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
