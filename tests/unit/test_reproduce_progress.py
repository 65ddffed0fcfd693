"""`ddl reproduce`'s progress lines, predictions and cuts, and the error a failed experiment keeps."""

from __future__ import annotations

import time

import pytest


def test_progress_predicts_each_run_from_its_config_then_its_experiment() -> None:
    from ddl_commodity.reproduce.runner import _time_left, predicted_seconds

    state = {"experiments": {"redshift-5k-same-1w": {"state": "succeeded", "seconds": 120.0},
                             "landcover-batch10": {"state": "failed", "seconds": 240.0},
                             "landcover-batch50": {"state": "succeeded", "seconds": 360.0}}}
    assert predicted_seconds(state, "redshift-5k-same-1w-seed2") == (120.0, "mean of 1 of the redshift-5k-same-1w runs")
    # a failed run's seconds do not say how long the run takes
    assert predicted_seconds(state, "landcover-fig6_7") == (360.0, "mean of 1 of the landcover runs")
    assert predicted_seconds({"experiments": {}}, "landcover-fig6_7") is None
    # the failed batch10 (run again) and fig6_7 at 360 s each: 12 minutes
    left = _time_left(state, ["landcover-batch10", "landcover-fig6_7"], time.monotonic() - 360)
    assert left == " (elapsed 6 min, about 12 min left)"
    assert _time_left({"experiments": {}}, ["a"], time.monotonic()) == " (elapsed 0 min)"


def test_a_run_past_the_budget_is_cut_with_its_prediction() -> None:
    from ddl_commodity.reproduce.runner import _over_budget

    state = {"experiments": {"landcover-batch50": {"state": "succeeded", "seconds": 600.0}}}
    assert _over_budget(state, "landcover-fig6_7", 30.0, elapsed=19 * 60) is None        # 19 + 10 <= 30
    reason = _over_budget(state, "landcover-fig6_7", 30.0, elapsed=21 * 60)             # 21 + 10 > 30
    assert reason == ("predicted 10.0 min (mean of 1 of the landcover runs) with 9.0 of the 30-minute "
                      "budget left")
    assert _over_budget(state, "landcover-fig6_7", None, elapsed=10**6) is None
    assert _over_budget(state, "redshift-5k-single", 1.0, elapsed=10**6) is None         # nothing to predict from


def test_one_worker_cells_of_same_and_disjoint_data_are_one_run(tmp_path) -> None:
    """With M = 1 both distributions feed the whole training set in the same order: the second cell is a twin.
    With M = 3 they differ, and so does any other setting. A config path relative to the reproduction (a
    published copy's) is found there."""
    import yaml

    from ddl_commodity.reproduce.runner import _identical_run

    def doc(name: str, distribution: str, workers: int, epochs: int = 20) -> dict:
        return {"experiment": "redshift", "name": name, "seed": 2,
                "training": {"workers": workers, "epochs": epochs, "data_distribution": distribution}}

    state: dict = {"experiments": {}}
    for name, d in (("same-1w", doc("same-1w", "same", 1)), ("same-3w", doc("same-3w", "same", 3))):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(d))
        state["experiments"][name] = {"state": "succeeded", "config": str(path) if name == "same-3w" else path.name}
    assert _identical_run(state, doc("disjoint-1w", "disjoint", 1), tmp_path) == "same-1w"
    assert _identical_run(state, doc("disjoint-3w", "disjoint", 3), tmp_path) is None
    assert _identical_run(state, doc("same-3w", "same", 3), tmp_path) == "same-3w"
    assert _identical_run(state, doc("disjoint-1w", "disjoint", 1, epochs=21), tmp_path) is None
    state["experiments"]["same-1w"]["state"] = "failed"
    assert _identical_run(state, doc("disjoint-1w", "disjoint", 1), tmp_path) is None


def test_the_thesis_scale_has_an_eta_before_any_run_ended() -> None:
    """Runs not yet measured count at the thesis scale's expected seconds; other scales wait for a run."""
    from ddl_commodity.reproduce.runner import _time_left
    from ddl_commodity.reproduce.runsets import estimated_seconds

    todo = ["landcover-default-8k", "redshift-5k-same-3w"]
    minutes = sum(estimated_seconds(n, "thesis") for n in todo) / 60
    left = _time_left({"scale": "thesis", "experiments": {}}, todo, time.monotonic())
    assert left == f" (elapsed 0 min, about {minutes:.0f} min left)"
    assert _time_left({"scale": "smoke", "experiments": {}}, todo, time.monotonic()) == " (elapsed 0 min)"


def test_runs_not_yet_measured_go_at_the_pace_of_those_that_were() -> None:
    """A machine that ran the set's first runs at twice their expected seconds is expected to run the rest so;
    a config measured once is expected to take what it took."""
    from ddl_commodity.reproduce.runner import _time_left
    from ddl_commodity.reproduce.runsets import estimated_seconds

    first = "landcover-default-8k"
    state = {"scale": "thesis", "experiments": {first: {"state": "succeeded",
                                                        "seconds": 2 * estimated_seconds(first, "thesis")}}}
    todo = ["redshift-5k-same-3w", "redshift-5k-same-3w-seed2"]
    minutes = 2 * 2 * estimated_seconds(todo[0], "thesis") / 60
    assert _time_left(state, todo, time.monotonic()) == f" (elapsed 0 min, about {minutes:.0f} min left)"
    state["experiments"][todo[0]] = {"state": "succeeded", "seconds": 600.0}
    assert _time_left(state, todo[1:], time.monotonic()) == " (elapsed 0 min, about 10 min left)"


def _fake_runs(monkeypatch, send: int | None, raises: bool = False, state: str = "failed") -> list[str]:
    """Replaces the run itself (a Spark job) by one that ends in ``state`` after ``send`` reached this process:
    under a handler that swallows it (the job cancelled, a failure reported), or raising KeyboardInterrupt."""
    import os
    import signal

    from ddl_commodity.reproduce import runner

    started: list[str] = []

    def fake_run(name: str, doc: dict, out) -> dict:
        started.append(name)
        if send is not None:
            previous = signal.signal(send, runner_handler if raises else lambda *_: None)
            try:
                os.kill(os.getpid(), send)
            except KeyboardInterrupt:
                return {"config": None, "run_dir": None, "seconds": 1.0, "state": "failed", "error": "interrupted"}
            finally:
                signal.signal(send, previous)
        return {"config": None, "run_dir": None, "seconds": 1.0, "state": state,
                "error": None if state == "succeeded" else "job cancelled"}

    def runner_handler(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_run", fake_run)
    return started


def _experiments(out) -> dict:
    import json

    return json.loads((out / "reproduce.json").read_text())["experiments"]


@pytest.mark.parametrize(("raises", "state", "error"), [(False, "failed", "interrupted"),
                                                        (True, "failed", "interrupted"),
                                                        (False, "succeeded", None)])
def test_an_interrupted_run_stops_the_set(tmp_path, monkeypatch, raises, state, error) -> None:
    """Whether the signal ended the run as a failed job, as a KeyboardInterrupt, or after it succeeded: the
    set stops, the run is recorded, and SIGINT's handler and the wakeup fd are as they were."""
    import signal

    from ddl_commodity.reproduce.runner import reproduce

    handler = signal.getsignal(signal.SIGINT)
    started = _fake_runs(monkeypatch, send=signal.SIGINT, raises=raises, state=state)
    with pytest.raises(KeyboardInterrupt):
        reproduce("smoke", tmp_path / "set", only="redshift-5k-same-*")
    assert started == ["redshift-5k-same-1w"]
    entry = _experiments(tmp_path / "set")["redshift-5k-same-1w"]
    assert (entry["state"], entry["error"]) == (state, error)
    assert signal.getsignal(signal.SIGINT) is handler
    assert signal.set_wakeup_fd(-1) == -1


def test_a_failed_run_does_not_stop_the_set(tmp_path, monkeypatch) -> None:
    from ddl_commodity.reproduce.runner import reproduce

    started = _fake_runs(monkeypatch, send=None)
    reproduce("smoke", tmp_path / "set", only="redshift-5k-same-*")
    assert started == ["redshift-5k-same-1w", "redshift-5k-same-3w"]
    assert {e["error"] for e in _experiments(tmp_path / "set").values()} == {"job cancelled"}


def test_rerun_drops_the_matching_runs_and_their_twins_before_the_set_starts(tmp_path, capsys) -> None:
    """``--rerun PATTERN``: the matching runs that succeeded, and the runs recorded as the same run, are forgotten
    (an interrupted set then resumes with them); a pattern matching no run of the set is refused, nothing written."""
    import json

    from ddl_commodity.cli import main
    from ddl_commodity.reproduce.runner import _drop

    done = {"state": "succeeded", "seconds": 1.0, "run_dir": "-", "config": "-"}
    state = {"scale": "thesis", "experiments": {
        "landcover-default-8k": done, "landcover-batch50": {**done, "same_as": "landcover-default-8k"},
        "redshift-5k-single": done}}
    _drop(state, ["landcover-default-8k", "landcover-batch50", "redshift-5k-single"], "landcover-default-*", tmp_path)
    assert list(state["experiments"]) == ["redshift-5k-single"]
    assert json.loads((tmp_path / "reproduce.json").read_text()) == state
    out = tmp_path / "repro"
    assert main(["reproduce", "--scale", "thesis", "--out", str(out), "--rerun", "nothing-*"]) == 2
    assert "--rerun 'nothing-*' matches no run of the set" in capsys.readouterr().err and not out.exists()
