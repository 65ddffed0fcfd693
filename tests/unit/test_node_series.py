"""The per-node samples a reproduction keeps for its figures (Figs 6.5-6.28): thinned, with rates over the span
between kept samples, CPU wait 0-100 (old rows recomputed, unknown ones None)."""

from __future__ import annotations

from ddl_commodity.artifacts.nodes import node_series


def _rows(n: int, rate: float, old: bool = False) -> list[dict]:
    rows = []
    for i in range(n):
        row = {"time": 10.0 + i, "cpu_percent": 40.0, "rss_bytes": 2**20, "net_rx_bytes": int(rate * i),
               "net_tx_bytes": int(rate * i / 4), "cpu_share": 0.4}
        row |= {"cpu_wait_percent": 300.0} if old else {"cpu_wait_percent": 7.0, "run_queue_delay_percent": 90.0}
        rows.append(row)
    return rows


def test_series_are_thinned_with_rates_over_what_was_kept() -> None:
    s = node_series({"worker-0": _rows(1001, 2e6), "ps-0": _rows(11, 1e6)}, max_points=100)
    w = s["worker-0"]
    assert len(w["t"]) == 100 and w["t"][0] == 10.0 and w["t"][-1] == 1000.0  # every 10th sample
    assert set(w["rx"]) == {2.0} and set(w["tx"]) == {0.5} and set(w["wait"]) == {7.0}
    assert s["ps-0"]["t"] == [float(i) for i in range(1, 11)] and set(s["ps-0"]["memory"]) == {1.0}


def test_old_rows_get_a_wait_of_0_to_100_never_their_thread_sum() -> None:
    waits = node_series({"worker-0": _rows(5, 1e6, old=True)})["worker-0"]["wait"]
    assert all(w is not None and 0.0 <= w <= 100.0 for w in waits), waits
    assert node_series({}) == {} and node_series({"ps-0": _rows(1, 1.0)}) == {}
