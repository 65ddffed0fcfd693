"""The planner's step simulation and search on graphs built by hand (no TensorFlow, no profiling)."""

from __future__ import annotations

import itertools
import random

import pytest
import yaml

from ddl_commodity.models.placement import BlockGraph
from ddl_commodity.models.splits import parse_scheme
from ddl_commodity.planner.costs import LayerCosts
from ddl_commodity.planner.plan import (
    MIN_PREDICTED_GAIN,
    SchemeRow,
    block_placement,
    pick,
    split_yaml,
)
from ddl_commodity.planner.search import (
    Problem,
    best_placement,
    canonical_assignments,
    canonical_count,
    exhaustive,
    greedy_then_local,
)
from ddl_commodity.planner.simulate import ClusterModel, predict_step

NO_MEMORY_LIMIT = ClusterModel(cpu_share=0.5, bandwidth_bps=8e6, latency_s=0.0, base_bytes=0, memory_cap=None)


def chain(n: int, width: int = 10, weights: int = 0) -> BlockGraph:
    layers = [f"b{i}_l" for i in range(n)]
    edges = list(itertools.pairwise(["x", *layers, "loss"]))
    shapes = {"x": (width,), **{layer: (width,) for layer in layers}}
    return BlockGraph(layers, ["x"], edges, shapes, {layer: (weights, weights) for layer in layers})


def two_branches(depth: int, width: int = 1) -> BlockGraph:
    """x -> a1..a_depth, x -> c1..c_depth, both -> m (merge) -> loss: two heavy independent branches."""
    layers, edges = [], []
    for branch in ("a", "c"):
        names = [f"{branch}{i}_l" for i in range(1, depth + 1)]
        layers += names
        edges += [*itertools.pairwise(["x", *names]), (names[-1], "m_l")]
    layers.append("m_l")
    edges.append(("m_l", "loss"))
    shapes = {"x": (width,), **{layer: (width,) for layer in layers}}
    return BlockGraph(layers, ["x"], edges, shapes, dict.fromkeys(layers, (0, 0)))


def costs_for(graph: BlockGraph, batch: int = 10, **forward: float) -> LayerCosts:
    fwd = {layer: forward.get(layer.split("_")[0], 0.01) for layer in graph.layers}
    return LayerCosts(batch, fwd, {k: 2 * v for k, v in fwd.items()}, apply_s=0.0, client_s=0.0, step_s=0.0)


def blocks_of(graph: BlockGraph) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for layer in graph.layers:
        out.setdefault(layer.split("_")[0], []).append(layer)
    return out


def test_one_node_step_is_the_sum_of_its_work_at_its_share() -> None:
    g = chain(3, weights=1000)
    c = costs_for(g, b0=0.1, b1=0.2, b2=0.3)
    c = LayerCosts(c.batch, c.forward, c.backward, apply_s=0.05, client_s=0.02, step_s=0.0)
    p = predict_step(g, c, dict.fromkeys(g.layers, "worker:0"), "ps:0", "worker:0", NO_MEMORY_LIMIT)
    weights_s = 3 * 1000 * 4 / 1e6  # read: trainable weights over 1 MB/s; the last write ends the backward
    compute = (0.02 + 3 * (0.1 + 0.2 + 0.3)) / 0.5
    # reads overlap the client's work only from its end on; the PS applies after the last write arrives
    assert p.step_s == pytest.approx(compute + 1000 * 4 / 1e6 + 0.05 / 0.5, rel=0.05)
    assert p.busy_s["worker:0"] == pytest.approx(compute)
    assert p.links[("ps:0", "worker:0")] == 3 * 1000 * 4 and p.links[("worker:0", "ps:0")] == 3 * 1000 * 4
    assert weights_s < p.step_s


def test_crossing_a_link_costs_bytes_over_bandwidth_both_ways() -> None:
    g = chain(2, width=250)  # 10 x 250 floats = 10 kB per activation
    c = costs_for(g, b0=0.0, b1=0.0)
    split = predict_step(g, c, {"b0_l": "worker:0", "b1_l": "worker:1"}, "ps:0", "worker:0", NO_MEMORY_LIMIT)
    # b0 -> b1 forward, b1 -> loss (on worker:0) forward, and both gradients back: 4 x 10 kB at 1 MB/s
    assert split.step_s == pytest.approx(4 * 0.01, rel=1e-6)
    assert split.links == {("worker:0", "worker:1"): 20_000, ("worker:1", "worker:0"): 20_000}


def test_canonical_assignments_cover_every_placement_once_up_to_relabelling() -> None:
    n, w = 5, 3
    reps = list(canonical_assignments(n, w))
    assert len(reps) == len(set(reps))

    def canonical(a: tuple[int, ...]) -> tuple[int, ...]:
        relabel, out = {0: 0}, []
        for x in a:
            relabel.setdefault(x, len(relabel))
            out.append(relabel[x])
        return tuple(out)

    assert set(reps) == {canonical(a) for a in itertools.product(range(w), repeat=n)}


@pytest.mark.parametrize(("n", "w"), [(1, 1), (5, 3), (7, 4), (4, 16)])
def test_the_search_counts_the_placements_it_would_list(n: int, w: int) -> None:
    assert canonical_count(n, w) == sum(1 for _ in canonical_assignments(n, w))


def test_many_workers_are_searched_greedily_not_listed() -> None:
    """12 blocks on 16 workers are 27.6 million placements up to relabelling: too many to list."""
    assert canonical_count(12, 16) == 27_644_437
    assert sum(1 for _ in canonical_assignments(9, 3)) == (3**9 - 1) // 2 + 1  # the thesis model on 3 workers


def test_independent_heavy_branches_go_to_different_workers() -> None:
    g = two_branches(3)
    problem = Problem(g, costs_for(g, a1=0.1, a2=0.1, a3=0.1, c1=0.1, c2=0.1, c3=0.1), blocks_of(g), 3,
                      NO_MEMORY_LIMIT)
    found = exhaustive(problem)
    a = {found.blocks[f"a{i}"] for i in (1, 2, 3)}
    c = {found.blocks[f"c{i}"] for i in (1, 2, 3)}
    assert len(a) == 1 and len(c) == 1 and a != c, found.blocks
    alone = problem.predict(dict.fromkeys(blocks_of(g), "worker:0"))
    assert found.prediction.step_s < 0.6 * alone.step_s


def test_memory_caps_are_constraints() -> None:
    g = two_branches(1, width=100_000)  # 10 x 100k floats x 2 = 8 MB of activations per branch layer
    cluster = ClusterModel(cpu_share=1.0, bandwidth_bps=1e12, latency_s=0.0, base_bytes=0, memory_cap=12_000_000)
    problem = Problem(g, costs_for(g, a1=0.0, c1=0.0, m=0.0), blocks_of(g), 3, cluster)
    found = exhaustive(problem)
    assert found.prediction.fits(cluster.memory_cap)
    assert len({found.blocks["a1"], found.blocks["c1"], found.blocks["m"]}) == 3, found.blocks
    everything_on_one = problem.predict(dict.fromkeys(blocks_of(g), "worker:0"))
    assert not everything_on_one.fits(cluster.memory_cap)


def test_a_forty_block_model_is_planned_by_search_and_beats_random_placements() -> None:
    g = two_branches(20, width=50)
    rng = random.Random(0)
    c = costs_for(g, **{f"{b}{i}": rng.uniform(0.005, 0.05) for b in "ac" for i in range(1, 21)})
    problem = Problem(g, c, blocks_of(g), 4, ClusterModel(cpu_share=0.4, bandwidth_bps=4e8, latency_s=0.002))
    assert len(problem.block_map) == 41
    found = best_placement(problem)
    assert found.method.startswith("greedy") and found.evaluated <= 20_000
    alone = problem.predict(dict.fromkeys(problem.block_map, "worker:0")).step_s
    randoms = [problem.predict({b: rng.choice(problem.nodes) for b in problem.block_map}).step_s
               for _ in range(300)]
    assert found.prediction.step_s < 0.7 * alone
    assert found.prediction.step_s <= min(randoms)


def test_greedy_finds_the_exhaustive_optimum_on_a_small_model() -> None:
    g = two_branches(2, width=20)
    c = costs_for(g, a1=0.03, a2=0.01, c1=0.02, c2=0.04, m=0.01)
    exact = exhaustive(Problem(g, c, blocks_of(g), 3, NO_MEMORY_LIMIT)).prediction.step_s
    greedy = greedy_then_local(Problem(g, c, blocks_of(g), 3, NO_MEMORY_LIMIT)).prediction.step_s
    assert greedy <= 1.05 * exact


def test_the_written_split_is_a_valid_scheme_and_says_how_it_was_found() -> None:
    g = two_branches(2)
    problem = Problem(g, costs_for(g), blocks_of(g), 2, NO_MEMORY_LIMIT)
    found = exhaustive(problem)
    text = split_yaml(found, "ddl plan cfg.yaml --profile thesis", [])
    assert text.startswith("# Found by `ddl plan cfg.yaml --profile thesis`")
    scheme = parse_scheme(yaml.safe_load(text), "planned.yaml", blocks_of(g))
    assert {layer: scheme.layers[layer] for layer in g.layers} == {
        layer: found.blocks[b] for b, layers in blocks_of(g).items() for layer in layers}


def test_a_shipped_scheme_is_kept_unless_the_search_is_predicted_clearly_faster() -> None:
    """Within the cost model's error the known scheme wins; beyond it the search's placement does."""
    g = two_branches(2)
    problem = Problem(g, costs_for(g), blocks_of(g), 2, NO_MEMORY_LIMIT)
    found = exhaustive(problem)
    apart = parse_scheme({"name": "apart", "variables": "ps:0", "input": "worker:0", "placement": {
        "a1": "worker:0", "a2": "worker:0", "c1": "worker:1", "c2": "worker:1", "m": "worker:0"}},
        "apart.yaml", blocks_of(g))
    blocks = block_placement(apart, blocks_of(g))
    assert blocks == {"a1": "worker:0", "a2": "worker:0", "c1": "worker:1", "c2": "worker:1", "m": "worker:0"}
    even = 1.0 / (1.0 - MIN_PREDICTED_GAIN)  # the shipped scheme this much slower: the search gains exactly enough
    for slower_by, kept in ((even - 0.01, "apart"), (even + 0.01, None)):
        p = found.prediction
        shipped_p = type(p)(**{**vars(p), "step_s": p.step_s * slower_by})
        chosen = pick(found, [(SchemeRow("apart", "", shipped_p), blocks)])
        assert chosen.kept == kept, (slower_by, chosen.method)
        if kept:
            assert chosen.blocks == blocks and chosen.prediction is shipped_p
            assert chosen.method.startswith(found.method) and "apart kept" in chosen.method
        else:
            assert chosen is found
    # a scheme that puts one layer of a block elsewhere has no block placement: the search cannot express it
    split_one = parse_scheme({"name": "split", "placement": {"a": "worker:0", "a2_l": "worker:1"}}, "split.yaml",
                             {"a": ["a1_l", "a2_l"]})
    assert block_placement(split_one, {"a": ["a1_l", "a2_l"]}) is None


def test_links_serve_transfers_in_the_order_they_become_ready() -> None:
    """Two branches send 1 MB each into worker:0. The graph lists the slow branch (a1, 0.5 s) first, but the
    fast one (c1) is ready first and goes first: a schedule in listing order would hold it behind a1."""
    layers = ["a1_l", "c1_l", "m_l"]
    edges = [("x", "a1_l"), ("a1_l", "m_l"), ("x", "c1_l"), ("c1_l", "m_l"), ("m_l", "loss")]
    shapes = {"x": (1,), "a1_l": (25_000,), "c1_l": (25_000,), "m_l": (1,)}
    g = BlockGraph(layers, ["x"], edges, shapes, dict.fromkeys(layers, (0, 0)))
    c = LayerCosts(10, {"a1_l": 0.5, "c1_l": 0.01, "m_l": 0.0}, {"a1_l": 1.0, "c1_l": 0.02, "m_l": 0.0},
                   apply_s=0.0, client_s=0.0, step_s=0.0)
    cluster = ClusterModel(cpu_share=1.0, bandwidth_bps=8e6, latency_s=0.0, base_bytes=0, memory_cap=None)
    p = predict_step(g, c, {"a1_l": "worker:1", "c1_l": "worker:2", "m_l": "worker:0"}, "ps:0", "worker:0",
                     cluster)
    forward = 0.01 + 1.0 + 1.0  # c1's megabyte from 0.01 s, then a1's (ready at 0.5 s), into worker:0
    backward = 1.0 + 1.0 + 1.0  # m's two input gradients out of worker:0 one after the other, a1's backward
    assert p.step_s == pytest.approx(forward + backward, rel=0.01)


def test_a_shaped_link_passes_its_bucket_at_once_and_nodes_lose_their_idle_load() -> None:
    g = chain(2, width=250_000)  # 10 x 250k floats = 10 MB per activation
    c = costs_for(g, b0=0.0, b1=0.0)
    split = {"b0_l": "worker:0", "b1_l": "worker:1"}
    plain = ClusterModel(cpu_share=1.0, bandwidth_bps=8e7, latency_s=0.0, base_bytes=0, memory_cap=None)
    bucket = ClusterModel(cpu_share=1.0, bandwidth_bps=8e7, latency_s=0.0, base_bytes=0, memory_cap=None,
                          burst_s=0.05)  # 0.5 MB at 10 MB/s
    slow = predict_step(g, c, split, "ps:0", "worker:0", plain).step_s
    fast = predict_step(g, c, split, "ps:0", "worker:0", bucket).step_s
    assert slow == pytest.approx(4 * 1.0)  # four 10 MB transfers, one after another
    assert fast == pytest.approx(4 * (10 - 0.5) / 10, rel=0.01)  # each after the link was quiet: bucket full
    busy = costs_for(chain(1), b0=0.1)
    idle = ClusterModel(cpu_share=0.4, bandwidth_bps=8e7, latency_s=0.0, base_bytes=0, memory_cap=None,
                        idle_cores=0.1)
    p = predict_step(chain(1), busy, {"b0_l": "worker:0"}, "ps:0", "worker:0", idle)
    assert p.busy_s["worker:0"] == pytest.approx(0.3 / 0.3)  # forward + backward at the 0.3 core left


def test_a_node_under_a_cpu_quota_runs_a_short_burst_at_full_speed() -> None:
    """CFS: 0.4 core is 40 ms of CPU per 100 ms period. A node that keeps computing gets 0.4 core; one that
    waits between short bursts (worker:1 here, while worker:0 computes) runs them at full speed from what its
    quota saved meanwhile, and worker:0 makes up its own wait from its quota too."""
    quota = dict(cpu_share=0.4, bandwidth_bps=8e7, latency_s=0.0, base_bytes=0, memory_cap=None)
    g = chain(2)
    c = costs_for(g, b0=0.1, b1=0.005)  # forward + backward: 0.3 and 0.015 s of one core per step
    split = {"b0_l": "worker:0", "b1_l": "worker:1"}
    steady = predict_step(g, c, split, "ps:0", "worker:0", ClusterModel(**quota)).step_s
    bursty = predict_step(g, c, split, "ps:0", "worker:0", ClusterModel(**quota, cpu_period_s=0.1)).step_s
    assert steady == pytest.approx((0.3 + 0.015) / 0.4, abs=0.001)  # both at 0.4 core, one after the other
    assert bursty == pytest.approx(0.3 / 0.4, abs=0.001)  # worker:0's quota is the whole step
    alone = predict_step(chain(1), costs_for(chain(1), b0=0.01), {"b0_l": "worker:0"}, "ps:0", "worker:0",
                         ClusterModel(**quota, cpu_period_s=0.1)).step_s
    assert alone == pytest.approx(0.03 / 0.4)  # always busy: no burst, whatever the step's size


def test_every_tensor_crossing_costs_both_sides_a_fixed_cpu_time() -> None:
    """A layer's weights cross as one tensor per variable (read: the trainable ones; written back: all), each
    costing its sender and its receiver a fixed CPU time whatever its size."""
    import dataclasses

    from ddl_commodity.planner.transport import FREE

    per_tensor = dataclasses.replace(FREE, send_s_per_tensor=0.001, recv_s_per_tensor=0.002)
    cluster = ClusterModel(cpu_share=0.5, bandwidth_bps=8e12, latency_s=0.0, base_bytes=0, memory_cap=None,
                           transport=per_tensor)
    plain = chain(2, weights=1000)
    g = dataclasses.replace(plain, tensors=dict.fromkeys(plain.layers, (2, 3)))  # e.g. BatchNorm's 2 + 1
    c = costs_for(g, b0=0.0, b1=0.0)
    p = predict_step(g, c, dict.fromkeys(g.layers, "worker:0"), "ps:0", "worker:0", cluster)
    # per layer: 2 tensors read (PS sends, worker receives), 3 written back (worker sends, PS receives)
    assert p.busy_s["worker:0"] == pytest.approx(2 * (2 * 0.002 + 3 * 0.001) / 0.5)
    assert p.busy_s["ps:0"] == pytest.approx(2 * (2 * 0.001 + 3 * 0.002) / 0.5)
    assert p.step_s >= p.busy_s["worker:0"]
    one_each = predict_step(plain, c, dict.fromkeys(g.layers, "worker:0"), "ps:0", "worker:0", cluster)
    assert one_each.busy_s["worker:0"] == pytest.approx(2 * (0.002 + 0.001) / 0.5)  # a kernel alone, unsaid


def test_a_model_that_fits_no_placement_is_a_plan_error_not_a_plan() -> None:
    from ddl_commodity.experiments.registry import load
    from ddl_commodity.planner.errors import PlanError
    from ddl_commodity.planner.plan import Target, plan_model_parallel

    experiment, cfg = load("configs/landcover-quick.yaml")
    names = [layer for layers in experiment.blocks(cfg).values() for layer in layers]
    costs = LayerCosts(batch=50, forward=dict.fromkeys(names, 0.01), backward=dict.fromkeys(names, 0.01),
                       apply_s=0.01, client_s=0.0, step_s=0.5)
    tiny = ClusterModel(cpu_share=0.4, bandwidth_bps=4e8, latency_s=0.0, memory_cap=200_000_000)
    with pytest.raises(PlanError, match=r"fits the nodes' memory cap of 0\.2 GiB"):
        plan_model_parallel(experiment, cfg, costs, Target(tiny, 2, "2 workers", None))


def test_a_transfer_ends_no_sooner_than_its_sender_has_sent_it() -> None:
    """worker:0 computes for 1 s when a 1 kB send out of it becomes ready; the send's CPU (0.1 s at 1e-4 s a
    byte) runs after that op, so the receiver's op (0.5 s) starts at 1.1 s, not at 0.1 s; on a link that takes
    1 s for the kilobyte, at 2.0 s."""
    import dataclasses

    from ddl_commodity.planner.simulate import _StepGraph
    from ddl_commodity.planner.transport import FREE

    cluster = ClusterModel(cpu_share=1.0, bandwidth_bps=8e12, latency_s=0.0, base_bytes=0, memory_cap=None,
                           transport=dataclasses.replace(FREE, send_s_per_byte=1e-4))
    g = _StepGraph(cluster)
    g.compute("worker:0", 1.0, [])
    g.compute("worker:1", 0.5, g.send("worker:0", "worker:1", 1000, []))
    end, busy, _ = g.schedule()
    assert end == pytest.approx(1.0 + 0.1 + 0.5) and busy["worker:0"] == pytest.approx(1.1)
    slow = _StepGraph(dataclasses.replace(cluster, bandwidth_bps=8000.0))  # 1 kB takes the link 1 s
    slow.compute("worker:0", 1.0, [])
    slow.compute("worker:1", 0.5, slow.send("worker:0", "worker:1", 1000, []))
    assert slow.schedule()[0] == pytest.approx(1.0 + 1.0 + 0.5)  # the link starts when the sender does


def test_a_layer_output_crosses_to_a_node_once_for_all_its_readers_there() -> None:
    """a (worker:1) feeds b and c, both on worker:0: a's output crosses once forward; its two gradients (one from
    b, one from c) cross back as two tensors."""
    layers = ["a_l", "b_l", "c_l", "m_l"]
    edges = [("x", "a_l"), ("a_l", "b_l"), ("a_l", "c_l"), ("b_l", "m_l"), ("c_l", "m_l"), ("m_l", "loss")]
    g = BlockGraph(layers, ["x"], edges, dict.fromkeys(["x", *layers], (100,)), dict.fromkeys(layers, (0, 0)))
    p = predict_step(g, costs_for(g), {"a_l": "worker:1", "b_l": "worker:0", "c_l": "worker:0", "m_l": "worker:0"},
                     "ps:0", "worker:0", NO_MEMORY_LIMIT)
    tensor = 10 * 100 * 4  # batch 10 x 100 floats
    assert p.links == {("worker:0", "worker:1"): tensor + 2 * tensor, ("worker:1", "worker:0"): tensor}
