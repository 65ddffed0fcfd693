"""`ddl report OUT --publish DIR`: the report and what a reader needs, without raw run directories, and a run
that was cut or failed says why in the report."""

from __future__ import annotations

import json
from pathlib import Path

from ddl_commodity.cli import main


def reproduction(tmp_path: Path) -> Path:
    out = tmp_path / "repro"
    run = out / "runs" / "landcover-fig6_7"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"name": "landcover-fig6_7", "description": "Fig 6.7 scheme"}))
    (run / "config.yaml").write_text("name: landcover-fig6_7\n")
    (run / "job.log").write_text("raw log that stays out\n")
    state = {"scale": "thesis", "invocations": [{
        "command": "ddl reproduce --scale thesis", "date": "2026-11-30 02:26:00 UTC", "commit": "abc1234",
        "machine": {"cores": 2, "memory_bytes": 24 * 2**30, "system": "Linux"}, "profile": "thesis",
        "dilation": 0.4}],
        "experiments": {
            "landcover-fig6_7": {"state": "succeeded", "seconds": 90.0, "run_dir": str(run),
                                 "config": str(out / "configs" / "landcover-fig6_7.yaml")},
            "landcover-batch50": {"state": "succeeded", "seconds": 90.0, "run_dir": str(run),
                                  "config": "-", "same_as": "landcover-fig6_7"},
            "redshift-5k-same-1w": {"state": "failed", "seconds": 30.0, "run_dir": "-", "config": "-",
                                    "error": "error: node worker-0 stopped responding"},
            "landcover-dp-8k": {"state": "cut", "seconds": 0.0, "run_dir": None, "config": None,
                                "reason": "predicted 9.0 min (mean of 7 of the landcover runs) with 2.0 of the "
                                          "150-minute budget left"}}}
    (out / "reproduce.json").write_text(json.dumps(state))
    return out


def test_publish_copies_the_report_and_summaries_not_the_runs(tmp_path: Path) -> None:
    out = reproduction(tmp_path)
    assert main(["report", str(out), "--publish", str(tmp_path / "docs")]) == 0
    docs = tmp_path / "docs"
    md = (docs / "report.md").read_text()
    assert ("Run on 2 cores, 24 GiB (Linux), an embedded cluster per run, profile `thesis` (d = 0.4), by this "
            "command:") in md
    assert "- 2026-11-30 02:26:00 UTC, commit `abc1234`: `ddl reproduce --scale thesis`" in md
    assert "2 of 4 runs succeeded, 1 failed, 1 were cut for time" in md
    assert "| landcover-dp-8k | cut | 0 | predicted 9.0 min (mean of 7 of the landcover runs)" in md
    assert ("| landcover-batch50 | succeeded | 90 | the run of landcover-fig6_7 (the same config at this scale, "
            "or one worker's same feed) |") in md
    assert "| redshift-5k-same-1w | failed | 30 | error: node worker-0 stopped responding |" in md
    assert (docs / "index.html").is_file()
    assert sorted(p.name for p in (docs / "runs" / "landcover-fig6_7").iterdir()) == ["config.yaml", "summary.json"]
    assert not (docs / "runs" / "landcover-batch50").exists()  # a twin is not copied twice
    state = json.loads((docs / "reproduce.json").read_text())
    assert state["experiments"]["landcover-fig6_7"]["run_dir"] == "runs/landcover-fig6_7"


def test_publish_of_a_single_run_is_refused(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    assert main(["report", str(run), "--publish", str(tmp_path / "docs")]) == 2
    assert "--publish is for a `ddl reproduce` directory" in capsys.readouterr().err
    assert not (tmp_path / "docs").exists()
