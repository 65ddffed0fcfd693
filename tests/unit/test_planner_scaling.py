"""The data-parallel scaling model and the measured transport costs in the step simulation, on profiles built
by hand whose answers can be worked out on paper (no TensorFlow, no cluster)."""

from __future__ import annotations

import itertools

import pytest

from ddl_commodity.models.placement import BlockGraph
from ddl_commodity.planner.costs import LayerCosts
from ddl_commodity.planner.scaling import DataParallelTask, break_even, predict_workers, scaling_curve
from ddl_commodity.planner.simulate import ClusterModel, predict_step
from ddl_commodity.planner.transport import FREE, TransportCosts, fit_line

#: One full core per PC, a link of 8 MB/s, no latency: one push of 1M weights (4 MB) takes 0.5 s each way.
PC = ClusterModel(cpu_share=1.0, bandwidth_bps=64e6, latency_s=0.0, base_bytes=0, memory_cap=None)


def test_break_even_of_a_synchronous_disjoint_task_worked_out_by_hand() -> None:
    """100 samples, batch 1, a step of 1 s on a full core: one PC computes for 100 s an epoch. With M PCs and
    disjoint data each computes ceil(100 / M) s. At the epoch's end all M push 4 MB (0.5 s each through the
    PS's 8 MB/s link, one after the other: 0.5 M s), the PS applies (free here), and the M pulls leave the
    same way (0.5 M s). So an epoch takes T(M) = ceil(100 / M) + M seconds:

        M:    1    2   ...  8   9   10   11   12  ...  64
        T:  101   52   ... 21  21   20   21   21  ...  66

    T is smallest at M = 10 (20 s): the break-even. With disjoint data an epoch is one pass over the set, so the
    time to a target of 3 passes is 3 T(M), and the 10th PC is the last that pays."""
    task = DataParallelTask(step_s=1.0, weights=1_000_000, samples=100, batch=1, distribution="disjoint",
                            target_passes=3.0)
    curve = scaling_curve(task, PC)
    assert sorted(curve) == list(range(1, 65))
    by_hand = {m: -(-100 // m) + m for m in range(1, 65)}
    for m, point in curve.items():
        assert point.epoch_s == pytest.approx(by_hand[m]), m
        assert point.time_to_target_s == pytest.approx(3 * by_hand[m])
        # PS-bound once the exchange through the PS's link (M s) outlasts the compute: from M = 11 on
        assert point.bound == ("ps" if m > 10 else "workers"), m
    assert break_even(curve) == 10
    assert curve[10].epoch_s == pytest.approx(20.0)


def test_an_asynchronous_ps_becomes_the_bottleneck_at_m_times_its_time_per_push() -> None:
    """s = 1: a worker waits only for its own push (0.5 s in, 0.5 s out). With the whole set per worker (same
    data) it computes 10 s and cycles in 11 s; the PS serves one 0.5 s push per worker per cycle, so with M
    workers its link needs 0.5 M s a cycle: PS-bound from M = 23 (11.5 s > 11 s). A pass over the set is
    one worker's epoch over M: 11 / M up to M = 22 (0.5 s), then 0.5 M / M = 0.5 s flat. The break-even is the
    first M where the flat part starts: 22."""
    task = DataParallelTask(step_s=0.1, weights=1_000_000, samples=100, batch=1, distribution="same", s=1)
    curve = scaling_curve(task, PC)
    assert curve[1].epoch_s == pytest.approx(11.0)
    assert curve[22].bound == "workers" and curve[23].bound == "ps"
    assert curve[40].epoch_s == pytest.approx(40 * 0.5)
    assert curve[22].pass_s == pytest.approx(0.5) and curve[64].pass_s == pytest.approx(0.5)
    assert break_even(curve) == 22


def test_the_ps_cpu_and_the_held_out_scoring_are_paid_for() -> None:
    """The PS's CPU per push (receive, send, apply, at its share) is a shared resource too, and every worker
    scores the held-out set twice an epoch (its own weights, the adopted ones), in batches of the scoring's
    size."""
    import dataclasses

    cpu = TransportCosts(0.0, 0.0, 0.0, 0.0, ps_s_per_byte=1e-7, ps_apply_s_per_byte=1e-7)
    slow_ps = ClusterModel(cpu_share=1.0, bandwidth_bps=64e6, latency_s=0.0, base_bytes=0, memory_cap=None,
                           transport=cpu)
    task = DataParallelTask(step_s=0.0, weights=1_000_000, samples=10, batch=1, distribution="same", s=1,
                            validation_samples=4, eval_step_s=0.25, eval_batch=1)
    one = predict_workers(task, 1, slow_ps)
    in_threes = predict_workers(dataclasses.replace(task, eval_batch=3), 1, slow_ps)
    assert in_threes.compute_s == pytest.approx(2 * 2 * 0.25)  # 4 held-out samples: 2 batches of 3
    # each transfer: 4 MB x 1e-7 s = 0.4 s of CPU either side < 0.5 s on the link; per push the PS's CPU is
    # 0.4 + 0.4 + 0.4 (apply) + 0.4 (the new weights, once per aggregate of s = 1) = 1.6 s > 0.5 s of link
    assert one.compute_s == pytest.approx(2 * 4 * 0.25)
    assert one.epoch_s == pytest.approx(2.0 + 0.5 + 0.4 + 0.4 + 0.5)
    assert predict_workers(task, 8, slow_ps).epoch_s == pytest.approx(8 * 1.6)


def chain(n: int, width: int) -> BlockGraph:
    layers = [f"b{i}_l" for i in range(n)]
    shapes = {"x": (width,), **{layer: (width,) for layer in layers}}
    return BlockGraph(layers, ["x"], list(itertools.pairwise(["x", *layers, "loss"])), shapes,
                      {layer: (0, 0) for layer in layers})


def test_sending_and_receiving_cost_cpu_and_the_input_worker_dispatches_to_every_remote_node() -> None:
    g = chain(2, width=250_000)  # 10 x 250k floats = 10 MB per activation and per gradient
    zero = LayerCosts(10, dict.fromkeys(g.layers, 0.0), dict.fromkeys(g.layers, 0.0), 0.0, 0.0, 0.0)
    split = {"b0_l": "worker:0", "b1_l": "worker:1"}
    fast_link = dict(cpu_share=0.5, bandwidth_bps=8e9, latency_s=0.0, base_bytes=0, memory_cap=None)
    free = predict_step(g, zero, split, "ps:0", "worker:0", ClusterModel(**fast_link))
    cpu = TransportCosts(remote_call_s=0.01, remote_serve_s=0.02, send_s_per_byte=1e-8, recv_s_per_byte=2e-8,
                         ps_s_per_byte=0.0, ps_apply_s_per_byte=0.0)
    paid = predict_step(g, zero, split, "ps:0", "worker:0", ClusterModel(**fast_link, transport=cpu))
    assert free.step_s == pytest.approx(4 * 10e6 / 1e9)  # four 10 MB transfers at 1 GB/s
    # the same four now last as long as their receiver's CPU: 10 MB x 2e-8 s / 0.5 core = 0.4 s each
    dispatch = 2 * 0.01 / 0.5  # to worker:1 and ps:0 (the weights' node), which then serve it: 0.02 / 0.5 s
    assert paid.step_s == pytest.approx(dispatch + 0.02 / 0.5 + 4 * 0.4, rel=0.01)
    # both workers sent two and received two: 2 x (0.2 + 0.4) s, plus worker:0's dispatch, worker:1's serving
    assert paid.busy_s["worker:0"] == pytest.approx(2 * 0.6 + dispatch)
    assert paid.busy_s["worker:1"] == pytest.approx(2 * 0.6 + 0.02 / 0.5)
    assert predict_step(g, zero, split, "ps:0", "worker:0", ClusterModel(**fast_link, transport=FREE)) == free


def test_fit_line_recovers_a_per_call_and_a_per_byte_cost() -> None:
    sizes = [4.0, 4e6, 16e6]
    intercept, slope = fit_line(sizes, [0.001 + 2e-10 * s for s in sizes])
    assert intercept == pytest.approx(0.001) and slope == pytest.approx(2e-10)
    assert fit_line([1.0, 2.0], [1.0, 0.5]) == (pytest.approx(1.5), 0.0)  # a falling line: no negative cost


def test_a_slower_ps_link_alone_paces_every_transfer_to_the_ps_and_its_load() -> None:
    """The PS's link 10x slower than the workers' (0.8 MB/s): a 4 MB push or pull takes 5 s. Synchronous
    (s = M), disjoint, 100 one-second steps: T(M) = ceil(100 / M) + 2 x 5 M, smallest at M = 3 (34 + 30 = 64 s,
    against 50 + 20 = 70 s at M = 2 and 25 + 40 = 65 s at M = 4)."""
    slow_ps = ClusterModel(cpu_share=1.0, bandwidth_bps=64e6, ps_bandwidth_bps=6.4e6, latency_s=0.0,
                           base_bytes=0, memory_cap=None)
    task = DataParallelTask(step_s=1.0, weights=1_000_000, samples=100, batch=1, distribution="disjoint")
    curve = scaling_curve(task, slow_ps, max_workers=8)
    assert [round(curve[m].epoch_s, 6) for m in (1, 2, 3, 4)] == [110.0, 70.0, 64.0, 65.0]
    assert break_even(curve) == 3
    assert slow_ps.link_bytes_per_s("ps:0") == 0.8e6 and slow_ps.link_bytes_per_s("worker:3") == 8e6


def test_pushes_every_k_steps_count_the_steps_across_epochs() -> None:
    """60 samples, batch 1, a step of 1 s: 60 s of compute an epoch on one PC. Pushing every 40 steps, a worker
    that counts its steps across epochs pushes 1.5 times an epoch (not ceil(60 / 40) = 2), each push and pull
    of 4 MB 0.5 s through the PS's 8 MB/s link: 60 + 1.5 x 1 = 61.5 s."""
    task = DataParallelTask(step_s=1.0, weights=1_000_000, samples=60, batch=1, push_every_steps=40)
    assert predict_workers(task, 1, PC).epoch_s == pytest.approx(61.5)


def test_the_held_out_batch_is_the_engines() -> None:
    from ddl_commodity.engines.scoring import EVAL_BATCH

    assert DataParallelTask(step_s=0.0, weights=1, samples=1, batch=1).eval_batch == EVAL_BATCH
