"""A regression through the real cluster paths: ``examples/redshift_regression.py`` (z predicted as a float by a
1D CNN with a Huber loss) run with ``ddl run`` data parallel (Spark feeds float targets, the PS node scores the
final model) and model parallel (its two blocks on two workers), scored by |dz|/(1+z) against the trivial
estimator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.test_redshift_cluster import assert_no_leftover_processes

# One module fixture runs every run these tests read: the module stays on one xdist worker.
pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("regression")]

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = "examples.redshift_regression:RedshiftRegression"
DZ_METRICS = ("val_dz_median", "val_dz_nmad", "val_outlier_fraction")


def ddl(*args: str) -> subprocess.CompletedProcess:
    # cwd = the checkout, as a user runs it: `examples.redshift_regression` is imported from there by dotted path.
    return subprocess.run([sys.executable, "-m", "ddl_commodity.cli", *args], capture_output=True, text=True,
                          timeout=600, check=False, cwd=REPO)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """``kind -> (run directory, what ddl run printed)``: small data, 3 epochs, 2 workers."""
    tmp = tmp_path_factory.mktemp("regression")
    out = {}
    for kind in ("data-parallel", "model-parallel"):
        doc = yaml.safe_load((REPO / "examples" / f"redshift-regression-{kind}.yaml").read_text())
        doc["data"].update(samples=2000, cache_dir=str(tmp / "data"))
        doc["training"]["epochs"] = 3
        doc["output"] = {"runs_dir": str(tmp / "runs")}
        path = tmp / f"{kind}.yaml"
        path.write_text(yaml.safe_dump(doc))
        proc = ddl("run", str(path), "--run-id", kind, "--no-progress")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out[kind] = (tmp / "runs" / kind, proc.stdout)
    assert_no_leftover_processes(tmp)  # only this module's clusters: another test may run its own
    return out


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def records(run_dir: Path, worker: str) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "workers" / f"{worker}.jsonl").read_text().splitlines()]


def test_data_parallel_regression_beats_the_trivial_estimator(runs) -> None:
    """Float z fed by Spark, trained by 2 workers through the PS; the final model (scored on the PS node with the
    experiment's Huber loss and |dz|/(1+z) metrics) beats always guessing the training median."""
    run_dir, stdout = runs["data-parallel"]
    s = summary(run_dir)
    assert s["experiment"] == EXPERIMENT and s["mode"] == "data_parallel"
    assert s["data_distribution_check"]["consistent"], s["data_distribution_check"]
    final, trivial = s["final"], s["trivial_estimator"]
    assert all(isinstance(final[k], float) for k in ("val_loss", *DZ_METRICS)), final
    assert final.get("val_accuracy") is None and "val_within_1" not in final  # no classes, no accuracy
    assert final["val_dz_median"] < 0.8 * trivial["dz_median"], (final, trivial)
    assert set(s["workers"]) == {"worker-0", "worker-1"}
    assert all(w["final_accuracy"] is None for w in s["workers"].values())
    for worker in ("worker-0", "worker-1"):
        rs = records(run_dir, worker)
        assert len(rs) == 3 and all(r["accuracy"] is None and r["val_accuracy"] is None for r in rs)
        assert rs[-1]["global_val_loss"] < rs[0]["global_val_loss"], rs
        assert all(r["global_val_dz_median"] is not None for r in rs)
    assert "held-out |dz|/(1+z): median" in stdout and "accuracy" not in stdout, stdout
    import keras

    model = keras.saving.load_model(run_dir / "model.keras")
    assert model.name == "redshift_regression" and model.output_shape == (None, 1)


def test_model_parallel_regression_learns_on_its_split(runs) -> None:
    """The same model with its blocks on two workers: the loss is computed on the input node, float targets
    read from the shipped data file; the placement is the split's."""
    run_dir, _ = runs["model-parallel"]
    s = summary(run_dir)
    assert s["mode"] == "model_parallel" and s["scheme"]["name"] == "redshift-regression-two-workers"
    assert s["placement_check"]["consistent"], s["placement_check"]["problems"]
    assert s["scheme"]["layers"]["head_z"] == "worker:1" and s["scheme"]["layers"]["features_conv1"] == "worker:0"
    rs = records(run_dir, "worker-0")
    assert [r["epoch"] for r in rs] == [1, 2, 3] and all(r["accuracy"] is None for r in rs)
    assert rs[-1]["val_loss"] < rs[0]["val_loss"] and rs[-1]["loss"] < rs[0]["loss"], rs
    assert s["final"]["val_dz_median"] < s["trivial_estimator"]["dz_median"], s["final"]


def test_report_of_a_regression(runs) -> None:
    run_dir, _ = runs["data-parallel"]
    proc = ddl("report", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert "Per-epoch results" in proc.stdout and "median |dz|/(1+z)" in proc.stdout, proc.stdout
