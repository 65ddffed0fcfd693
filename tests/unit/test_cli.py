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


BAD_INPUTS = [
    # configuration
    ("training:\n  workers: [2\n", "not valid YAML"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ({"unknown_section": 1}, "unknown_section: unknown key"),
    ({"training": {"wrkers": 2}}, "training.wrkers: unknown key"),
    ({"training": {"epochs": "many"}}, "training.epochs"),
    ({"training": {"workers": 0}}, "training.workers"),
    ({"training": {"batch_size": -5}}, "training.batch_size"),
    ({"training": {"workers": 2}, "ps": {"s": 5}}, "ps.s=5 exceeds"),
    ({"training": {"workers": 3}, "cluster": {"spark_workers": 2}}, "need as many Spark executors"),
    ({"training": {"data_distribution": "random"}}, "training.data_distribution"),
    ({"ps": {"staleness": "linear"}}, "ps.staleness"),
    ({"ps": {"decay": 0}}, "ps.decay"),
    ({"cluster": {"master": "yarn"}}, "cluster.master"),
    ({"data": {"validation_fraction": 0.9}}, "data.validation_fraction"),
    ({"model": {"dropout": 1.5}}, "model.dropout"),
    # data files
    ({"data": {"path": "missing.h5"}}, "data file not found"),
    ({"data": {"path": "text.h5"}}, "not a readable HDF5 file"),
    ({"data": {"path": "short.h5"}}, "spectra have 1700 bands, expected 1800"),
    ({"data": {"path": "nan.h5"}}, "NaN or Inf"),
    ({"data": {"path": "nolabel.h5"}}, "dataset 'label' is missing"),
    ({"data": {"path": "empty.h5"}}, "holds no spectra"),
    ({"data": {"path": "tiny.h5"}, "training": {"workers": 4}, "ps": {"s": 1}}, "too few for 4 workers"),
    # output
    ({"data": {"path": "ok.h5"}, "output": {"runs_dir": "afile/runs"}}, "cannot create a run directory"),
]


def write_data_files(d: Path) -> None:
    import h5py
    import numpy as np

    from ddl_commodity.data.redshift import write_redshift_h5

    (d / "text.h5").write_text("this is not HDF5")
    (d / "afile").write_text("a file where a directory should be")
    write_redshift_h5(d / "ok.h5", 40, seed=1, progress=False)
    write_redshift_h5(d / "tiny.h5", 3, seed=1, progress=False)
    for name, spectra in (("short.h5", np.zeros((5, 1700), np.float32)), ("nan.h5", np.full((5, 1800), np.nan)),
                          ("nolabel.h5", np.zeros((5, 1800), np.float32)), ("empty.h5", np.zeros((0, 1800)))):
        n = len(spectra)
        with h5py.File(d / name, "w") as f:
            f["spectra"], f["z"] = spectra, np.full(n, 1.2)
            if name != "nolabel.h5":
                f["label"] = np.full(n, 250, np.int32)


@pytest.mark.parametrize(("doc", "needle"), BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input_exits_2_and_leaves_no_run(tmp_path: Path, doc, needle: str) -> None:
    write_data_files(tmp_path)
    if isinstance(doc, dict):
        doc = {"output": {"runs_dir": str(tmp_path / "runs")}, **doc}
        doc = yaml.safe_dump(doc)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(doc)
    proc = run_ddl("run", str(cfg), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())
    assert not list(tmp_path.rglob("summary.json"))


def test_report_refuses_unfinished_run_and_a_directory_that_is_no_run(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    proc = run_ddl("report", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
    (tmp_path / "r" / "status.json").write_text('{"state": "failed"}')
    proc = run_ddl("report", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 2 and "did not finish" in proc.stderr


BAD_ARGUMENTS = [
    (["reproduce", "--scale", "huge"], "ddl reproduce: argument --scale: invalid choice: 'huge'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["cluster", "fault", "node1", "explode"], "ddl cluster fault: argument ACTION: invalid choice"),
    (["cluster", "fault", "node1", "freeze", "--state-dir", "{tmp}/none"], "no local cluster recorded"),
    (["data", "redshift", "--samples", "3", "--out", "{tmp}"], "is a directory"),
    (["data", "redshift", "--samples", "3", "--magnitude-std", "-1", "--out", "{tmp}/x.h5"],
     "--magnitude-std must be at least 0"),
    (["compare", "{tmp}/a", "{tmp}/b", "--out", "{tmp}/afile"], "--out {tmp}/afile: is a file"),
    (["run", "{tmp}/empty.yaml"], "the file is empty"),
    (["run", "{tmp}/broken.yaml"], "not valid YAML: line 3, column 1: expected"),
    (["run", "--resume", "{tmp}"], "not a run directory"),
    (["plan", "configs/quickstart.yaml", "--workers", "0"], "--workers 0: expected 1 to 16"),
    (["plan", "configs/quickstart.yaml", "--latency-ms", "-1"], "--latency-ms -1: expected at least 0"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD_ARGUMENTS, ids=[" ".join(a[:2]) for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_one_line_exit_2_and_write_nothing(tmp_path: Path, capsys, argv, needle) -> None:
    (tmp_path / "afile").write_text("")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "broken.yaml").write_text("name: x\ntraining: [oops: 1\n")
    before = sorted(tmp_path.rglob("*"))
    argv = [a.format(tmp=tmp_path) for a in argv]
    try:
        code = main(argv)
    except SystemExit as stop:  # the argument parser's own exit
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert needle.format(tmp=tmp_path) in err
    assert sorted(tmp_path.rglob("*")) == before
