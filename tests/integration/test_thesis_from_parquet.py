"""The thesis configs run from Parquet with one key: ``data.as_parquet: true`` writes the run's data file once
as a Parquet data set and the run reads it as ``data.source`` (here a chapter 5 and a chapter 6 config at the
smoke scale of ``ddl reproduce``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.cluster


# A chapter 5 config from Parquet runs in the netns cluster's quickstart test; here a chapter 6 one.
@pytest.mark.parametrize("name", ["landcover-dp-2.5k"])
def test_a_thesis_config_runs_from_parquet(tmp_path: Path, name: str) -> None:
    from ddl_commodity.reproduce.runner import resized_config

    doc = resized_config(name, "smoke")
    doc["data"].update(as_parquet=True, cache_dir=str(tmp_path / "data"))
    doc["training"]["epochs"] = 2
    doc["output"] = {"runs_dir": str(tmp_path / "runs")}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "run", str(path), "--run-id", "pq",
                           "--no-progress"], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "as Parquet:" in proc.stdout
    assert "confirmed by index digests" in proc.stdout
    summary = json.loads((tmp_path / "runs" / "pq" / "summary.json").read_text())
    written = list((tmp_path / "data").glob("*.parquet"))
    assert len(written) == 1 and summary["data"] == str(written[0])
    recorded = yaml.safe_load((tmp_path / "runs" / "pq" / "config.yaml").read_text())
    assert recorded["data"]["source"] == str(written[0])  # a resumed run reads the same data set
    assert not (tmp_path / "runs" / "pq" / "validation.npz").exists()  # the nodes read the validation pieces
    if name.startswith("redshift"):
        assert summary["trivial_estimator"]["dz_median"] > 0
