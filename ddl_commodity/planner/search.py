"""Find the placement of a model's blocks on workers with the shortest predicted step, within memory caps.

Two methods, both over :func:`~ddl_commodity.planner.simulate.predict_step`:

* :func:`exhaustive`: every assignment of blocks to workers, up to symmetry. The input node (the one that
  runs the training loop) is special; the other workers are interchangeable, so only assignments in which
  they first appear in order (worker 1 before worker 2, ...) are tried. The thesis model's 9 blocks on 3
  workers: 9,842 placements instead of 19,683.
* :func:`greedy_then_local`: for graphs too large to enumerate. Blocks are placed one by one in graph order,
  each on the node that gives the shortest predicted step so far (the rest waiting on the input node: an
  earliest-finish-time heuristic in the spirit of Baechi's m-ETF), then single-block moves are made while
  one shortens the step (local search). Evaluations are counted and bounded.

Placements that exceed a node's memory cap are never chosen (Baechi's constraint).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from ddl_commodity.models.placement import BlockGraph
from ddl_commodity.planner.costs import LayerCosts
from ddl_commodity.planner.simulate import ClusterModel, StepPrediction, predict_step

#: Above this many candidate placements :func:`best_placement` searches instead of enumerating.
EXHAUSTIVE_LIMIT = 50_000


@dataclass
class Found:
    """The best placement found (``blocks[block] = node``), its prediction, and how it was found."""

    blocks: dict[str, str]
    prediction: StepPrediction
    method: str
    evaluated: int
    kept: str | None = None  # the shipped scheme chosen instead of the search's placement (``plan.pick``)


class Problem:
    """A model (graph, costs, ``block -> layers``) on ``workers`` workers of ``cluster``, weights on ps:0,
    the training loop on worker:0."""

    def __init__(self, graph: BlockGraph, costs: LayerCosts, block_map: dict[str, list[str]], workers: int,
                 cluster: ClusterModel, variables: str = "ps:0", entry: str = "worker:0") -> None:
        self.graph, self.costs, self.block_map, self.cluster = graph, costs, block_map, cluster
        self.nodes = [f"worker:{i}" for i in range(workers)]
        self.variables, self.entry = variables, entry
        self.evaluated = 0

    def predict(self, blocks: dict[str, str]) -> StepPrediction:
        self.evaluated += 1
        where = {layer: blocks[b] for b, layers in self.block_map.items() for layer in layers}
        return predict_step(self.graph, self.costs, where, self.variables, self.entry, self.cluster)

    def score(self, blocks: dict[str, str]) -> tuple[float, StepPrediction]:
        """Predicted step seconds; infinite when a node's memory would exceed its cap."""
        p = self.predict(blocks)
        return (p.step_s if p.fits(self.cluster.memory_cap) else float("inf")), p


def canonical_assignments(n_blocks: int, workers: int) -> Iterator[tuple[int, ...]]:
    """Worker index per block, one representative per relabelling of workers 1..W-1 (worker 0 stays)."""
    def extend(prefix: list[int], used: int) -> Iterator[tuple[int, ...]]:
        if len(prefix) == n_blocks:
            yield tuple(prefix)
            return
        for w in range(min(used + 1, workers - 1) + 1):  # 0, any worker already used, or the next new one
            yield from extend([*prefix, w], max(used, w))

    yield from extend([], 0)


def exhaustive(problem: Problem) -> Found:
    blocks = list(problem.block_map)
    best: tuple[float, dict[str, str], StepPrediction] | None = None
    for assignment in canonical_assignments(len(blocks), len(problem.nodes)):
        placed = {b: problem.nodes[w] for b, w in zip(blocks, assignment, strict=True)}
        step, p = problem.score(placed)
        if best is None or step < best[0]:
            best = (step, placed, p)
    assert best is not None
    return Found(best[1], best[2], "exhaustive (up to relabelling the workers)", problem.evaluated)


def greedy_then_local(problem: Problem, max_evaluations: int = 20_000) -> Found:
    blocks = list(problem.block_map)
    placed = dict.fromkeys(blocks, problem.entry)
    for b in blocks:  # earliest finish: each block where the step (so far) ends first
        options = []
        for node in problem.nodes:
            placed[b] = node
            options.append((problem.score(placed)[0], problem.nodes.index(node), node))
        placed[b] = min(options)[2]
    step, p = problem.score(placed)
    improved = True
    while improved and problem.evaluated < max_evaluations:
        improved = False
        for b, node in itertools.product(blocks, problem.nodes):
            if placed[b] == node:
                continue
            trial = {**placed, b: node}
            s, q = problem.score(trial)
            if s < step - 1e-9:
                placed, step, p, improved = trial, s, q, True
            if problem.evaluated >= max_evaluations:
                break
    return Found(placed, p, "greedy earliest finish, then single-block moves", problem.evaluated)


def best_placement(problem: Problem) -> Found:
    """Exhaustive where the symmetry-pruned space is small enough, else greedy plus local search."""
    if canonical_count(len(problem.block_map), len(problem.nodes)) <= EXHAUSTIVE_LIMIT:
        return exhaustive(problem)
    return greedy_then_local(problem)


def canonical_count(n_blocks: int, workers: int) -> int:
    """How many assignments :func:`canonical_assignments` yields, counted without listing them."""
    # ways[u]: completions of the blocks still to place when the highest worker used so far is u
    ways = [1] * workers
    for _ in range(n_blocks):
        ways = [sum(ways[max(u, w)] for w in range(min(u + 1, workers - 1) + 1)) for u in range(workers)]
    return ways[0]
