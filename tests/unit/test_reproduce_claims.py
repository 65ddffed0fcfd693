"""The reproduction report's Fig 5.4 claim: time to stable accuracy, 3 workers vs 1, stated either way."""

from __future__ import annotations

from ddl_commodity.report.reproduce import _claims

CRITERION = "accuracy/patience=1/min_delta=0.001"


def summary(wall_seconds: float, plateau: dict[str, int | None], epochs: int = 10) -> dict:
    return {"wall_seconds": wall_seconds, "epochs_to_plateau": {CRITERION: plateau},
            "workers": {w: {"epochs": epochs} for w in plateau}}


def fig_5_4(summaries: dict) -> dict[str, dict]:
    return {c["what"]: c for c in _claims(summaries) if "Fig 5.4" in c["what"]}


def test_faster_cluster_agrees_and_slower_one_says_more() -> None:
    claims = fig_5_4({
        # same data: 1 worker plateaus at epoch 8 of 10 in 100 s (80 s); 3 workers at 7 of 10 in 200 s (140 s)
        "redshift-5k-same-1w": summary(100, {"worker-0": 8}),
        "redshift-5k-same-3w": summary(200, {"worker-0": 7, "worker-1": 9, "worker-2": None}),
        # disjoint: the first of the 3 workers plateaus at epoch 3 of 10 in 150 s (45 s) vs 80 s
        "redshift-5k-disjoint-1w": summary(100, {"worker-0": 8}),
        "redshift-5k-disjoint-3w": summary(150, {"worker-0": 3, "worker-1": None, "worker-2": 10}),
    })
    same = claims["time to stable accuracy, 3 workers vs 1 (same data, Fig 5.4)"]
    assert same["ours"] == "75% more" and same["agree"] is False
    disjoint = claims["time to stable accuracy, 3 workers vs 1 (disjoint data, Fig 5.4)"]
    assert disjoint["ours"] == "44% less" and disjoint["agree"] is True


def test_no_plateau_is_not_measured() -> None:
    claims = fig_5_4({"redshift-5k-same-1w": summary(100, {"worker-0": None}),
                      "redshift-5k-same-3w": summary(100, {"worker-0": 4})})
    same = claims["time to stable accuracy, 3 workers vs 1 (same data, Fig 5.4)"]
    assert same["ours"] == "not measured" and same["agree"] is None
