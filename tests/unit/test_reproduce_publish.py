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
            "redshift-5k-same-3w": {"state": "failed", "seconds": 12.0, "run_dir": "-", "config": "-",
                                    "error": "interrupted"},
            "landcover-dp-8k": {"state": "cut", "seconds": 0.0, "run_dir": None, "config": None,
                                "reason": "predicted 9.0 min (mean of 7 of the landcover runs) with 2.0 of the "
                                          "150-minute budget left"}}}
    (out / "reproduce.json").write_text(json.dumps(state))
    return out


def test_publish_copies_the_report_and_summaries_not_the_runs(tmp_path: Path) -> None:
    out = reproduction(tmp_path)
    (out / "configs").mkdir()
    (out / "configs" / "landcover-fig6_7.yaml").write_text("name: landcover-fig6_7\nseed: 1\n")  # as the set ran it
    assert main(["report", str(out), "--publish", str(tmp_path / "docs")]) == 0
    docs = tmp_path / "docs"
    md = (docs / "report.md").read_text()
    assert ("Run on 2 cores, 24 GiB (Linux), an embedded cluster per run, profile `thesis` (d = 0.4), by this "
            "command:") in md
    assert "- commit `abc1234`: `ddl reproduce --scale thesis`" in md and "02:26" not in md  # no dates in docs
    assert ("2 of 5 runs succeeded, 1 failed, 1 were cut for time, 1 interrupted (run again when the set "
            "continues)") in md
    assert "| redshift-5k-same-3w | interrupted | 12 | interrupted |" in md
    assert "| landcover-dp-8k | cut | 0 | predicted 9.0 min (mean of 7 of the landcover runs)" in md
    assert ("| landcover-batch50 | succeeded | 90 | the run of landcover-fig6_7 (the same config at this scale, "
            "or one worker's same feed) |") in md
    assert "| redshift-5k-same-1w | failed | 30 | error: node worker-0 stopped responding |" in md
    assert (docs / "index.html").is_file()
    assert sorted(p.name for p in (docs / "runs" / "landcover-fig6_7").iterdir()) == ["config.yaml", "summary.json"]
    assert not (docs / "runs" / "landcover-batch50").exists()  # a twin is not copied twice
    state = json.loads((docs / "reproduce.json").read_text())
    assert state["experiments"]["landcover-fig6_7"]["run_dir"] == "runs/landcover-fig6_7"
    # the config the set ran it with, to find twins when the copy is continued; a twin points at its run's
    assert state["experiments"]["landcover-fig6_7"]["config"] == "configs/landcover-fig6_7.yaml"
    assert (docs / "configs" / "landcover-fig6_7.yaml").read_text() == "name: landcover-fig6_7\nseed: 1\n"
    assert state["experiments"]["landcover-batch50"]["config"] == "configs/landcover-fig6_7.yaml"
    # a run that did not succeed keeps its state and error, not this machine's paths
    failed = state["experiments"]["redshift-5k-same-1w"]
    assert failed["run_dir"] is None and failed["config"] is None and failed["error"].startswith("error: node")
    assert state["invocations"][0]["commit"] == "abc1234" and "date" not in state["invocations"][0]


def test_publish_replaces_an_earlier_copy_and_refuses_the_reproduction_itself(tmp_path: Path, capsys) -> None:
    out = reproduction(tmp_path)
    docs = tmp_path / "docs"
    (docs / "runs" / "gone").mkdir(parents=True)
    assert main(["report", str(out), "--publish", str(docs)]) == 0
    assert not (docs / "runs" / "gone").exists() and (docs / "report.md").is_file()
    assert not list(tmp_path.glob(".docs.*"))
    for dest in (out, out / "published", tmp_path):
        assert main(["report", str(out), "--publish", str(dest)]) == 2
        assert "inside or around the reproduction" in capsys.readouterr().err
    assert (out / "reproduce.json").is_file() and not (out / "published").exists()
    assert main(["report", str(docs), "--publish", str(tmp_path / "again")]) == 2  # a published copy
    assert "has no report/ to publish" in capsys.readouterr().err


def test_publish_of_a_single_run_is_refused(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    assert main(["report", str(run), "--publish", str(tmp_path / "docs")]) == 2
    assert "--publish is for a `ddl reproduce` directory" in capsys.readouterr().err
    assert not (tmp_path / "docs").exists()


def _monitored_run(run: Path) -> None:
    """A default-scheme run with 30 one-second samples per node and two epochs of one worker."""
    nodes = {"ps-0": 4e6, "worker-0": 1e6, "worker-1": 2e6, "worker-2": 3e6}  # bytes in per second
    layers = {"rgb_conv1": "worker:0", "hsi_conv1": "worker:1", "merge_concat": "worker:2"}
    averages = {n: {"cpu_percent_mean": 50.0, "cpu_percent_max": 60.0, "iowait_percent_mean": 0.0,
                    "cpu_wait_percent_mean": 5.0, "cpu_wait_percent_max": 9.0, "run_queue_delay_percent_mean": 70.0,
                    "rss_mb_mean": 100.0, "rss_mb_max": 120.0, "rx_mb_per_s": r / 1e6, "tx_mb_per_s": r / 2e6}
                for n, r in nodes.items()}
    summary = {"name": run.name, "description": "default scheme", "scheme": {"layers": layers},
               "node_averages": averages}
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "nodes").mkdir()
    for node, rate in nodes.items():
        rows = [{"time": 100.0 + i, "cpu_percent": 50.0, "cpu_wait_percent": 5.0, "run_queue_delay_percent": 70.0,
                 "rss_bytes": 2**20, "memory_bytes": 2**30, "net_rx_bytes": int(rate * i),
                 "net_tx_bytes": int(rate * i / 2)} for i in range(30)]
        (run / "nodes" / f"{node}.jsonl").write_text(json.dumps({"rows": rows}) + "\n")
    (run / "workers").mkdir()
    (run / "workers" / "worker-0.jsonl").write_text("".join(
        json.dumps({"epoch": e, "loss": 1.0 / e, "accuracy": 0.5 + e / 10, "seconds": 3.0}) + "\n" for e in (1, 2)))


def test_a_published_page_is_redrawn_in_place_from_its_summaries_and_series(tmp_path: Path) -> None:
    """``ddl report`` on the published directory: the claims page and the figures they rest on (traffic over
    time per node, as Fig 6.6) from the runs' series.json; every claim has a verdict."""
    out = tmp_path / "repro"
    state = {"scale": "thesis", "experiments": {}}
    for name in ("landcover-default-8k", "landcover-batch200"):  # batch 200: Fig 6.6's run
        run = out / "runs" / name
        run.mkdir(parents=True)
        _monitored_run(run)
        state["experiments"][name] = {"state": "succeeded", "seconds": 90.0, "run_dir": str(run), "config": "-"}
    (out / "reproduce.json").write_text(json.dumps(state))
    docs = tmp_path / "docs"
    assert main(["report", str(out), "--publish", str(docs)]) == 0
    kept = json.loads((docs / "runs" / "landcover-default-8k" / "series.json").read_text())
    assert kept["epoch_curves"]["worker-0"][1] == {"epoch": 2, "loss": 0.5, "accuracy": 0.7, "seconds": 3.0}
    ps = kept["node_series"]["ps-0"]
    assert len(ps["t"]) == 29 and ps["rx"][0] == 4.0 and ps["tx"][-1] == 2.0 and max(ps["wait"]) <= 100
    (docs / "report.md").unlink()
    assert main(["report", str(docs)]) == 0
    md = (docs / "report.md").read_text()
    assert not (docs / "report").exists()  # in place
    assert "Fig 6.6: `fig6_6-traffic-ps-merging`\n\nThe thesis: \"the bulk of traffic is actually gathered" in md
    assert "![Fig 6.6: fig6_6-traffic-ps-merging](figures/traffic-landcover-batch200.png)" in md
    assert (docs / "figures" / "traffic-landcover-batch200.png").read_bytes()[:4] == b"\x89PNG"
    assert (docs / "figures" / "wait-box-landcover-batch200.png").is_file()  # Fig 6.9's box plot, the baseline
    rows = [line for line in md.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert len(rows) >= 25 and all(line.rstrip(" |").rsplit("|", 1)[-1].strip().strip("*") in
                                   ("agree", "partly", "no", "not testable here") for line in rows)


def test_a_copy_of_a_published_directory_continues_the_set(tmp_path: Path, capsys) -> None:
    """``ddl reproduce --out COPY --publish DIR``: the copy's runs that succeeded are kept (not run again), the
    figures of its runs (whose raw directories it lacks) stay on the page, and DIR gets the continued report."""
    import shutil

    from PIL import Image

    out = reproduction(tmp_path)
    docs = tmp_path / "docs"
    assert main(["report", str(out), "--publish", str(docs)]) == 0
    figure = docs / "figures" / "landcover-fig6_7-curves.png"
    Image.new("RGB", (8, 8), "white").quantize(colors=4).save(figure)  # published: 256 colours at most
    copy = tmp_path / "continued"
    shutil.copytree(docs, copy)
    capsys.readouterr()
    again = tmp_path / "docs2"
    assert main(["reproduce", "--scale", "thesis", "--only", "landcover-fig6_7", "--out", str(copy),
                 "--publish", str(again)]) == 1  # the fixture's failed runs stay failed
    assert "[1/1] landcover-fig6_7: already done" in capsys.readouterr().out
    assert (copy / "report" / "index.html").is_file() and not (copy / "figures").exists()
    assert "(figures/landcover-fig6_7-curves.png)" in (again / "report.md").read_text()
    assert (again / "figures" / "landcover-fig6_7-curves.png").read_bytes() == figure.read_bytes()  # not redone
    state = json.loads((again / "reproduce.json").read_text())
    assert state["experiments"]["landcover-fig6_7"]["run_dir"] == "runs/landcover-fig6_7"
    assert len(state["invocations"]) == 2 and all("date" not in i for i in state["invocations"])
    assert main(["report", str(again)]) == 0 and not (again / "report").exists()  # redrawn in place, failures and all
    assert main(["reproduce", "--scale", "thesis", "--out", str(copy), "--publish", str(copy / "pub")]) == 2
