"""The ddl command's surface: help texts and exit code 2 for bad input, before any cluster starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ddl_commodity.cli import build_parser, main


def test_help_lists_the_subcommands(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("data", "cluster", "run", "report"):
        assert cmd in out


@pytest.mark.parametrize("argv", [["data", "redshift"], ["cluster", "up"], ["cluster", "down"], ["cluster", "status"],
                                  ["run"], ["report"]])
def test_every_subcommand_has_help(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*argv, "--help"])
    assert exit_.value.code == 0
    assert len(capsys.readouterr().out.splitlines()) > 3


def run_ddl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddl_commodity.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120, check=False)


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"training": {"workers": 2}, "ps": {"s": 5}}, "ps.s=5 exceeds"),
        ({"unknown_section": 1}, "unknown key"),
        ({"data": {"path": "missing.h5"}}, "not found"),
        ({"training": {"workers": 3}, "cluster": {"spark_workers": 2}}, "need as many Spark executors"),
        ({"data": {"path": "short.h5"}}, "spectra have 1700 bands, expected 1800"),
        ({"data": {"path": "nan.h5"}}, "NaN or Inf"),
    ],
)
def test_bad_input_exits_2_and_leaves_no_run(tmp_path: Path, doc: dict, needle: str) -> None:
    import h5py
    import numpy as np

    for name, spectra in (("short.h5", np.zeros((5, 1700), np.float32)), ("nan.h5", np.full((5, 1800), np.nan))):
        with h5py.File(tmp_path / name, "w") as f:
            f["spectra"], f["z"], f["label"] = spectra, np.full(5, 1.2), np.full(5, 250, np.int32)
    doc = {**doc, "output": {"runs_dir": str(tmp_path / "runs")}}
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    proc = run_ddl("run", str(cfg), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert proc.stderr.count("error:") == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert not (tmp_path / ".cluster").exists()


def test_report_refuses_unfinished_run(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    proc = run_ddl("report", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 2 and "did not finish" in proc.stderr
