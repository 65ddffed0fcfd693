"""A user's own model (``examples/waves.py``, outside the package) through ``ddl run`` and ``ddl report``, both
ways the toolkit trains: data parallel with the staleness-weighted PS, model parallel with a split scheme."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.test_redshift_cluster import assert_no_leftover_processes

# One module fixture runs every run these tests read: the module stays on one xdist worker.
pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("byom")]


REPO = Path(__file__).resolve().parents[2]


def ddl(*args: str) -> subprocess.CompletedProcess:
    # cwd = the checkout, as a user runs it: `examples.waves` is imported from there by dotted path.
    return subprocess.run([sys.executable, "-m", "ddl_commodity.cli", *args], capture_output=True, text=True,
                          timeout=600, check=False, cwd=REPO)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("byom")
    out = {}
    for kind in ("data-parallel", "model-parallel"):
        doc = yaml.safe_load((REPO / "examples" / f"waves-{kind}.yaml").read_text())
        doc["data"]["path"] = str(tmp / f"waves-{kind}.npz")
        doc["output"] = {"runs_dir": str(tmp / "runs")}
        if kind == "model-parallel":
            doc["data"]["samples"] = 6000  # epochs of ~1 s: long enough windows for per-step bytes
        path = tmp / f"{kind}.yaml"
        path.write_text(yaml.safe_dump(doc))
        proc = ddl("run", str(path), "--run-id", kind, "--no-progress")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out[kind] = tmp / "runs" / kind
    assert_no_leftover_processes(tmp)  # only this module's clusters: another test may run its own
    return out


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_data_parallel_run_of_a_user_model_learns(runs: dict[str, Path]) -> None:
    s = summary(runs["data-parallel"])
    assert s["experiment"] == "examples.waves:WaveExperiment" and s["mode"] == "data_parallel"
    assert s["data_distribution_check"]["consistent"], s["data_distribution_check"]
    assert set(s["workers"]) == {"worker-0", "worker-1"} and s["ps_updates"] == 2 * 4  # M pushes per epoch
    assert s["final"]["val_accuracy"] > 0.5  # 4 classes: chance is 0.25
    import keras

    model = keras.saving.load_model(runs["data-parallel"] / "model.keras")
    assert model.name == "waves" and model.output_shape == (None, 4)


def test_model_parallel_run_places_the_user_blocks(runs: dict[str, Path]) -> None:
    """Block ``head`` on worker 1, ``features`` on worker 0: every op of each layer's forward and backward pass
    in the compiled step sits on that node, and the shape-computed traffic is what the scheme implies."""
    s = summary(runs["model-parallel"])
    assert s["scheme"]["name"] == "waves-two-workers"
    assert s["scheme"]["layers"]["head_out"] == "worker:1" and s["scheme"]["layers"]["features_conv"] == "worker:0"
    check = s["placement_check"]
    assert check["consistent"], check["problems"]
    assert check["layers"]["head_dense"] == ["/job:worker/replica:0/task:1/device:CPU:0"]
    assert check["layers"]["features_conv"] == ["/job:worker/replica:0/task:0/device:CPU:0"]
    # worker 1 receives the pooled features (batch x 16 floats), the loss gradient of its output (batch x 4)
    # and the head's weights every step; the bytes on the wire carry it plus the node's own reporting.
    computed = s["boundary_bytes_per_step"]["per_node"]["worker:1"]["rx_bytes"]
    assert computed == 32 * 16 * 4 + 32 * 4 * 4 + (16 * 32 + 32 + 32 * 4 + 4) * 4
    assert s["nodes"]["worker-1"]["rx_bytes_per_step"] >= 0.75 * computed
    records = [json.loads(line) for line in (runs["model-parallel"] / "workers" / "worker-0.jsonl").read_text()
               .splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3] and records[-1]["loss"] < records[0]["loss"]


def test_report_works_on_both(runs: dict[str, Path]) -> None:
    for kind, needle in (("data-parallel", "confirmed by the workers' index digests"),
                         ("model-parallel", "(computed)")):
        proc = ddl("report", str(runs[kind]))
        assert proc.returncode == 0, proc.stderr
        assert "Per-epoch results" in proc.stdout and needle in proc.stdout, proc.stdout
