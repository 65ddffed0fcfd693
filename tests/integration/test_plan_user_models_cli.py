"""`ddl plan` as a new user runs it on their own two-input model (``examples/two_inputs.py``: 16 tabular features
and a (40, 3) trace, three blocks): predictions for the model- and the data-parallel config, and for whatever
stops a plan (a loss no step can take, a model that does not build, a bad split, an unknown profile) one
``error:`` line and exit code 2, never a traceback. Real profiling in a subprocess (seconds per plan on the
narrow model): the cluster tier, like tests/integration/test_plan_cli.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SPLIT = REPO / "examples" / "splits" / "two-inputs-three-workers.yaml"
pytestmark = pytest.mark.cluster


def plan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    # from a directory of the user's own: the example and the test experiments import from the repository
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "plan", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def config(tmp_path: Path, example: str, **changes: dict) -> Path:
    """``examples/<example>`` with a narrow model, its data and split in ``tmp_path``, and ``changes`` merged."""
    doc = yaml.safe_load((REPO / "examples" / example).read_text())
    doc["model"] = {"filters": 4, "units": 8}
    doc["data"]["path"] = str(tmp_path / "two_inputs.npz")
    doc["training"]["batch_size"] = 16
    if "split" in doc["training"]:
        doc["training"]["split"] = str(SPLIT)
    for key, value in changes.items():
        doc[key] = {**doc[key], **value} if isinstance(value, dict) else value
    path = tmp_path / example
    path.write_text(yaml.safe_dump(doc))
    return path


def test_plan_of_a_two_input_model_predicts_its_split_and_a_better_one(tmp_path: Path) -> None:
    proc = plan(tmp_path, str(config(tmp_path, "two-inputs-model-parallel.yaml")), "--profile", "thesis",
                "--out", str(tmp_path / "planned.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip() == "", proc.stderr
    assert "loss sparse_categorical_crossentropy" in proc.stdout and "planned split:" in proc.stdout
    doc = json.loads((tmp_path / "planned.json").read_text())
    assert "two-inputs-three-workers" in doc["schemes"]  # the config's own split; no thesis scheme fits
    assert set(doc["planned"]["blocks"]) == {"trace", "tab", "head"}
    assert doc["costs"]["forward"]["trace_conv1"] > 0 and doc["costs"]["forward"]["tab_dense"] > 0


def test_plan_of_a_two_input_model_trained_data_parallel(tmp_path: Path) -> None:
    proc = plan(tmp_path, str(config(tmp_path, "two-inputs-data-parallel.yaml", data={"samples": 200})))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads((tmp_path / "two-inputs-dp-plan.json").read_text())
    assert f"break-even: {doc['break_even_workers']} worker(s)" in proc.stdout
    assert sorted(doc["data_parallel"]) == ["1", "2", "3", "4"] and len(doc["scaling"]) == 64


@pytest.mark.parametrize(("case", "changes", "args", "says"), [
    ("loss", {"experiment": "tests.plan_experiments:OneHotLossClassifier"}, (),
     "failed: a training step with loss categorical_crossentropy on random inputs of shape (16, 16), (16, 40, 3) "
     "fails: ValueError: Arguments `target` and `output` must have the same rank"),
    ("model", {"experiment": "tests.plan_experiments:BrokenModel"}, (),
     "ValueError: a user's bug: 3 classes but no head"),
    ("split", {"training": {"split": "no-such-split.yaml"}}, (), "split scheme 'no-such-split.yaml' not found"),
    ("profile", {}, ("--profile", "no-such-profile"), "cluster profile 'no-such-profile' not found"),
])
def test_what_stops_a_plan_is_one_error_line(tmp_path: Path, case: str, changes: dict, args: tuple[str, ...],
                                             says: str) -> None:
    proc = plan(tmp_path, str(config(tmp_path, "two-inputs-model-parallel.yaml", **changes)), *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert says in lines[0], lines[0]
    if case == "loss":  # the profiling process's traceback is kept where the line says
        log = Path(lines[0].rsplit("(its output: ", 1)[1].rstrip(")"))
        assert "Traceback" in log.read_text() and log.parent == tmp_path / "cache" / "ddl-commodity" / "plan-costs"
