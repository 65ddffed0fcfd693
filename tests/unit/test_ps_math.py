"""Eq. 5.1 of the thesis, the s-of-M buffer and update validation, on the in-process server."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from ddl_commodity.ps import (
    ParameterServerTimeout,
    StalenessWeightedServer,
    UpdateRejected,
    make_staleness,
    weights_delta,
)


def f32(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.float32)


def push_async(server: StalenessWeightedServer, *args) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = server.push(*args, timeout=10)
        except Exception as err:  # surfaced by the test through `out`
            out["error"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def wait_buffered(server: StalenessWeightedServer, n: int) -> None:
    deadline = time.monotonic() + 5
    while server.stats()["buffered"] != n:
        assert time.monotonic() < deadline, server.stats()
        time.sleep(0.005)


def test_hand_computed_example_s2_m3_mixed_staleness() -> None:
    log: list[dict] = []
    server = StalenessWeightedServer([f32(1.0, 2.0)], num_workers=3, s=2, staleness=make_staleness("inverse"),
                                     on_update=log.append)
    # Aggregate 1: workers 0 and 1 both trained from version 0 (tau = 0, lambda = 1):
    #   W1 = [1.0, 2.0] - 1/2 * ([0.2, -0.4] + [0.4, 0.0]) = [0.7, 2.2]
    t, out = push_async(server, 0, 0, [f32(0.2, -0.4)])
    wait_buffered(server, 1)
    assert server.version == 0  # one update of the s = 2 needed: nothing applied yet
    version, weights = server.push(1, 0, [f32(0.4, 0.0)], timeout=10)
    t.join(5)
    assert version == 1 and out["result"][0] == 1
    np.testing.assert_allclose(weights[0], [0.7, 2.2], atol=1e-6)
    # Aggregate 2: worker 2 is still on version 0 (tau = 1, lambda = 1/2), worker 0 on version 1 (tau = 0):
    #   W2 = [0.7, 2.2] - 1/2 * (0.5 * [1.0, 1.0] + 1.0 * [0.1, -0.2]) = [0.7, 2.2] - [0.3, 0.15] = [0.4, 2.05]
    t, out = push_async(server, 2, 0, [f32(1.0, 1.0)])
    wait_buffered(server, 1)
    version, weights = server.push(0, 1, [f32(0.1, -0.2)], timeout=10)
    t.join(5)
    assert version == 2
    np.testing.assert_allclose(weights[0], [0.4, 2.05], atol=1e-6)
    applied = [r for r in log if r["event"] == "applied"]
    assert [(r["worker"], r["tau"], r["lambda"]) for r in applied] == [(0, 0, 1.0), (1, 0, 1.0), (2, 1, 0.5),
                                                                       (0, 0, 1.0)]
    assert applied[2]["update_norm"] == pytest.approx(np.sqrt(2.0))
    assert [r["applied_version"] for r in applied] == [1, 1, 2, 2]


def test_s_equals_m_is_synchronous_averaging() -> None:
    server = StalenessWeightedServer([f32(0.0, 0.0)], num_workers=2, s=2)
    t, _ = push_async(server, 0, 0, [f32(-1.0, 0.0)])
    wait_buffered(server, 1)
    _, w = server.push(1, 0, [f32(-3.0, 2.0)], timeout=10)
    t.join(5)
    np.testing.assert_allclose(w[0], [2.0, -1.0])  # minus the mean delta


def test_s1_adopts_the_workers_local_weights() -> None:
    pulled = [f32(1.0, 1.0), np.ones((2, 2), np.float64)]
    local = [f32(0.5, 1.5), np.full((2, 2), 0.25)]
    server = StalenessWeightedServer(pulled, num_workers=3, s=1, staleness=make_staleness("constant"))
    version, w = server.push(2, 0, weights_delta(pulled, local), timeout=5)
    assert version == 1
    for got, want in zip(w, local, strict=True):
        np.testing.assert_allclose(got, want)


def test_finish_lowers_s_and_releases_a_waiting_pusher() -> None:
    log: list[dict] = []
    server = StalenessWeightedServer([f32(0.0)], num_workers=3, s=3, on_update=log.append)
    t, out = push_async(server, 0, 0, [f32(1.0)])
    wait_buffered(server, 1)
    server.finish(1)
    assert server.version == 0 and server.stats()["s_effective"] == 2
    server.finish(2)
    t.join(5)
    assert out["result"][0] == 1 and server.stats()["live_workers"] == 1
    np.testing.assert_allclose(out["result"][1][0], [-1.0])
    assert [r["event"] for r in log] == ["finished", "finished", "applied"]


def test_staleness_functions() -> None:
    assert make_staleness("constant")(7) == 1.0
    assert make_staleness("inverse")(3) == pytest.approx(0.25)
    assert make_staleness("exponential", 0.5)(3) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="choose one of constant, inverse, exponential"):
        make_staleness("linear")
    with pytest.raises(ValueError):
        make_staleness("exponential", 0.0)


@pytest.mark.parametrize(
    ("delta", "needle"),
    [
        ([f32(1.0, 2.0, 3.0)], "expected float32[2]"),
        ([np.array([1.0, 2.0])], "is float64[2], expected float32[2]"),
        ([f32(1.0, 2.0), f32(1.0)], "2 arrays, expected 1"),
        ([f32(np.nan, 0.0)], "NaN or Inf"),
        ([f32(np.inf, 0.0)], "NaN or Inf"),
    ],
)
def test_bad_updates_are_refused_and_logged(delta: list, needle: str) -> None:
    log: list[dict] = []
    server = StalenessWeightedServer([f32(1.0, 2.0)], num_workers=2, s=1, on_update=log.append)
    with pytest.raises(UpdateRejected, match=re.escape(needle)):
        server.push(1, 0, delta, timeout=1)
    assert server.version == 0 and server.stats()["rejected_updates"] == 1
    assert log[-1]["event"] == "rejected" and log[-1]["worker"] == 1
    np.testing.assert_array_equal(server.pull()[1][0], [1.0, 2.0])


def test_future_base_version_is_refused() -> None:
    server = StalenessWeightedServer([f32(1.0)], num_workers=1, s=1)
    with pytest.raises(UpdateRejected, match="base version 5"):
        server.push(0, 5, [f32(0.0)], timeout=1)


def test_push_timeout() -> None:
    server = StalenessWeightedServer([f32(1.0)], num_workers=2, s=2)
    with pytest.raises(ParameterServerTimeout):
        server.push(0, 0, [f32(0.5)], timeout=0.2)
    assert server.stats()["buffered"] == 0 and server.version == 0


def test_invalid_s() -> None:
    with pytest.raises(ValueError, match="1 <= s <= M"):
        StalenessWeightedServer([f32(1.0)], num_workers=2, s=3)


def test_handed_out_weights_are_read_only_and_never_change() -> None:
    """Pull and push return the server's arrays themselves (no copy per caller): an apply must build new
    ones, and nobody may write into them."""
    server = StalenessWeightedServer([np.zeros(3, np.float32)], num_workers=1, s=1)
    _, before = server.pull()
    with pytest.raises(ValueError, match="read-only"):
        before[0][0] = 1.0
    version, after = server.push(0, 0, [np.ones(3, np.float32)])
    assert version == 1
    np.testing.assert_array_equal(before[0], np.zeros(3))
    np.testing.assert_array_equal(after[0], -np.ones(3))


def test_an_apply_reuses_only_arrays_nobody_holds() -> None:
    """With nothing holding the weights (their replies sent), an apply writes into their memory (fresh memory
    costs a page fault per 4 KiB); never while someone holds them, and then the next version is elsewhere."""
    server = StalenessWeightedServer([np.zeros(1000, np.float32)], num_workers=1, s=1)
    first = server.pull()[1][0].ctypes.data  # nothing keeps version 0
    step = [np.full(1000, 0.5, np.float32)]
    server.push(0, 0, step)
    server.push(0, 1, step)
    assert server.pull()[1][0].ctypes.data == first
    kept = server.pull()[1]  # version 2, held
    server.push(0, 2, step)
    also_kept = server.pull()[1]  # version 3, held
    server.push(0, 3, step)
    np.testing.assert_array_equal(kept[0], np.full(1000, -1.0))
    np.testing.assert_array_equal(also_kept[0], np.full(1000, -1.5))
    now = server.pull()[1][0]
    assert now.ctypes.data not in (kept[0].ctypes.data, also_kept[0].ctypes.data)
    np.testing.assert_array_equal(now, np.full(1000, -2.0))


@pytest.mark.parametrize("stale", [False, True])
def test_large_arrays_split_across_cores_follow_eq_5_1(stale: bool) -> None:
    """Arrays of 1M+ elements are applied in pieces on several threads: the result is still eq. 5.1 for
    equal weights (a synchronous round) and for unequal ones (a stale update)."""
    rng = np.random.default_rng(3)
    w0 = [rng.standard_normal((1500, 800)).astype(np.float32), rng.standard_normal(7).astype(np.float32)]
    server = StalenessWeightedServer(w0, num_workers=2, s=2 if not stale else 1)
    deltas = [[rng.standard_normal(w.shape).astype(np.float32) * 1e-2 for w in w0] for _ in range(2)]
    if stale:  # s = 1: worker 1's update, based on version 0, lands on version 1 with tau = 1, lambda = 1/2
        server.push(0, 0, deltas[0])
        version, got = server.push(1, 0, deltas[1])
        want = [w - d0 - 0.5 * d1 for w, d0, d1 in zip(w0, *deltas, strict=True)]
    else:
        threads = [threading.Thread(target=server.push, args=(m, 0, deltas[m])) for m in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        version, got = server.pull()
        want = [w - 0.5 * (d0 + d1) for w, d0, d1 in zip(w0, *deltas, strict=True)]
    assert version == 2 if stale else version == 1
    for g, want_i in zip(got, want, strict=True):
        np.testing.assert_allclose(g, want_i, rtol=1e-5, atol=1e-6)
