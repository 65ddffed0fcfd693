"""Predict one model-parallel training step of a placement: step time, per-node CPU and memory, per-link bytes.

The step is simulated as TensorFlow runs it on the toolkit's model-parallel engine (thesis 6.2.3): weights
live on the variable node (the PS); every node reads the weights of the layers it computes at the start of
the step; the forward pass runs layer by layer in graph order, each layer on its node once its inputs have
arrived; the loss is taken on the input node; the backward pass runs in reverse, each layer's gradient op
on its forward op's node; every layer's weight gradients go back to the PS, which applies them all.

A node is one core at its CPU share ``c``: it runs one op at a time, and a layer that takes ``t`` seconds on
a full core takes ``t / c`` there. Under a CFS quota (``cpu_period_s`` > 0: ``c`` x the period of CPU per
period) a node that has been waiting runs at full speed until the quota is spent: its CPU is a bucket of
``c`` x period seconds that refills at ``c``, as the link's is one of bytes. A node whose work comes in short
bursts between transfers, as in a split model, so runs them faster than ``t / c``.

A transfer of ``n`` bytes between two nodes occupies the sender's outgoing and the receiver's incoming link (full
duplex, ``n / bandwidth`` seconds each) and arrives ``latency`` seconds after it left; transfers within a node are
free. A layer's output crosses to a node once, however many of its layers read it (TensorFlow sends a tensor once
per device); each gradient flowing back is a tensor of its own. Every node and link serves its work in the order it
becomes ready (the smaller first on a tie), as TensorFlow's executor runs whatever op has its inputs. Not modelled:
two transfers sharing a link at once (they queue instead), and cache effects.

What the layers' timings leave out is measured too (:mod:`ddl_commodity.planner.transport`): a transfer of ``k``
tensors and ``n`` bytes costs the sender ``k x send_s_per_tensor + n x send_s_per_byte`` and the receiver ``k x
recv_s_per_tensor + n x recv_s_per_byte`` of CPU (over ``c``; a layer's weights are one tensor per variable, an
activation or its gradient one), work they do alongside the link's (no byte leaves before the sender has finished
the op it is running; the transfer lasts until the last of the three is done) and that delays their next op; the
input worker dispatches the step to every other node that computes or holds weights (``remote_call_s`` each), and
each of those serves the call (``remote_serve_s``).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ddl_commodity.models.placement import BlockGraph
from ddl_commodity.planner.costs import LayerCosts
from ddl_commodity.planner.transport import FREE, TransportCosts

FLOAT_BYTES = 4
#: Optimizer state per trainable weight, in weights (Adam keeps two moments).
OPTIMIZER_SLOTS = {"adam": 2, "rmsprop": 1, "momentum": 1, "sgd": 0}


@dataclass(frozen=True)
class ClusterModel:
    """The emulated cluster: every node's CPU share, one link rate, a per-message latency, memory per node.

    ``base_bytes``: what a node uses before it holds any of the model (its Spark executor JVM, the TF server
    and runtime); ``memory_cap``: the node's memory (None: no cap); ``idle_cores``: what the node's daemons
    take of its share whatever it computes; ``burst_s``: the link shaper's bucket, in seconds of traffic
    (0: no bucket, every byte at the rate); ``ps_bandwidth_bps``: the PS's link when it differs from the
    others' (None: the same); ``transport``: the CPU costs of the step's dispatch and of
    every byte sent and received (:class:`~ddl_commodity.planner.transport.TransportCosts`);
    ``cpu_period_s``: the CFS period of the nodes' CPU quota (0: the share is a steady rate, no quota)."""

    cpu_share: float = 1.0
    bandwidth_bps: float = 1e9
    latency_s: float = 0.0005
    base_bytes: int = 700 * 2**20
    memory_cap: int | None = 2 * 2**30
    ps_cpu_share: float | None = None
    idle_cores: float = 0.0
    burst_s: float = 0.0
    ps_bandwidth_bps: float | None = None
    transport: TransportCosts = FREE
    cpu_period_s: float = 0.0

    @property
    def bytes_per_s(self) -> float:
        return self.bandwidth_bps / 8.0

    def link_bytes_per_s(self, node: str) -> float:
        """The rate of ``node``'s link (each direction), bytes per second."""
        return (self.ps_bandwidth_bps or self.bandwidth_bps) / 8.0 if node.startswith("ps:") else self.bytes_per_s

    def burst_bytes(self, node: str) -> float:
        """What ``node``'s link passes at once after a pause: the namespace cluster's tbf bucket (``burst_s``
        of traffic, at least 64 KiB and a frame); 0 without shaping (``burst_s`` 0)."""
        from ddl_commodity.cluster.netns import TBF_MIN_BURST_BYTES

        return max(TBF_MIN_BURST_BYTES, self.burst_s * self.link_bytes_per_s(node)) if self.burst_s > 0 else 0.0

    def share(self, node: str) -> float:
        """The cores a node's model work gets: its share less what its daemons use while idle."""
        share = self.ps_cpu_share if node.startswith("ps:") and self.ps_cpu_share else self.cpu_share
        return max(0.05 * share, share - self.idle_cores)


@dataclass
class StepPrediction:
    """One step of one placement. ``busy_s[node]``: compute seconds; ``links[(src, dst)]``: bytes per step."""

    step_s: float
    busy_s: dict[str, float] = field(default_factory=dict)
    memory_bytes: dict[str, int] = field(default_factory=dict)
    links: dict[tuple[str, str], int] = field(default_factory=dict)

    def cpu_fraction(self, node: str) -> float:
        """Share of the step the node computes: 1.0 = busy all step (its whole CPU share)."""
        return self.busy_s.get(node, 0.0) / self.step_s if self.step_s else 0.0

    def node_bytes(self, node: str) -> tuple[int, int]:
        """(received, sent) bytes per step."""
        rx = sum(n for (_, dst), n in self.links.items() if dst == node)
        tx = sum(n for (src, _), n in self.links.items() if src == node)
        return rx, tx

    def fits(self, cap: int | None) -> bool:
        return cap is None or all(m <= cap for m in self.memory_bytes.values())


class _StepGraph:
    """The step's work as tasks: computations on a node and transfers between two, each with the tasks it
    waits for. :meth:`schedule` runs them in the order they become ready (a task whose inputs are there
    starts as soon as its node, or its sender's outgoing and receiver's incoming links, are free), so every
    resource serves its tasks first come, first served."""

    def __init__(self, cluster: ClusterModel) -> None:
        self.cluster = cluster
        self.tasks: list[tuple[str, str, str, float]] = []  # (kind, node or sender, receiver, amount)
        self.tensors: dict[int, int] = {}  # transfer task -> tensors it moves
        self.deps: list[list[int]] = []
        self._buckets: dict[str, tuple[float, float]] = {}  # link direction -> (time, tokens in bytes)
        self._quota: dict[str, tuple[float, float]] = {}  # node -> (time, CPU seconds left in its quota)

    def compute(self, node: str, seconds: float, after: list[int]) -> int:
        self.tasks.append(("cpu", node, node, seconds))
        self.deps.append(after)
        return len(self.tasks) - 1

    def send(self, src: str, dst: str, nbytes: int, after: list[int], tensors: int = 1) -> list[int]:
        """The transfer's task, as a dependency list (empty, i.e. nothing to wait for, within a node)."""
        if src == dst or nbytes <= 0:
            return after
        self.tasks.append(("net", src, dst, float(nbytes)))
        self.deps.append(after)
        self.tensors[len(self.tasks) - 1] = tensors
        return [len(self.tasks) - 1]

    def _transmit(self, tx: str, rx: str, start: float, nbytes: float) -> float:
        """Seconds to send ``nbytes`` from ``start`` through both shapers (token buckets of ``burst_bytes``
        that refill at each node's link rate): the first bytes pass at once if the link has been quiet."""
        seconds = 0.0
        for key in (tx, rx):
            node = key.split(":", 1)[1]
            rate, burst = self.cluster.link_bytes_per_s(node), self.cluster.burst_bytes(node)
            last, tokens = self._buckets.get(key, (0.0, burst))
            tokens = min(burst, tokens + (start - last) * rate)
            seconds = max(seconds, max(0.0, nbytes - tokens) / rate)
            self._buckets[key] = (start, tokens)
        for key in (tx, rx):  # spent: what the transfer took beyond the refill while it lasted
            _, tokens = self._buckets[key]
            rate = self.cluster.link_bytes_per_s(key.split(":", 1)[1])
            self._buckets[key] = (start + seconds, max(0.0, tokens + seconds * rate - nbytes))
        return seconds

    def _run(self, node: str, start: float, work: float) -> float:
        """Wall seconds ``node`` takes for ``work`` seconds of one full core from ``start``: at its share, or
        under a quota at full speed while the bucket lasts (it drains at 1 - share while the node runs)."""
        share = self.cluster.share(node)
        if self.cluster.cpu_period_s <= 0 or share >= 1.0:
            return work / share
        capacity = share * self.cluster.cpu_period_s
        last, tokens = self._quota.get(node, (0.0, 0.0))  # empty: a busy node's steady state
        tokens = min(capacity, tokens + (start - last) * share)
        full = tokens / (1.0 - share)  # how long the node can run flat out before the quota is spent
        seconds = work if work <= full else full + (work - full) / share
        self._quota[node] = (start + seconds, max(0.0, tokens - (1.0 - share) * min(work, full)))
        return seconds

    def _transfer(self, i: int, at: float, free: dict[str, float], busy: dict[str, float], begin: float) -> float:
        """Schedule transfer task ``i``, ready at ``at``; returns when its last byte is in. It takes the
        sender's outgoing and the receiver's incoming link, and each side's CPU for its part alongside: no byte
        leaves before the sender has finished the op in hand, and the transfer lasts until the link and both
        CPU parts are done."""
        _, a, b, amount = self.tasks[i]
        t, n = self.cluster.transport, self.tensors[i]
        send = n * t.send_s_per_tensor + amount * t.send_s_per_byte
        receive = n * t.recv_s_per_tensor + amount * t.recv_s_per_byte
        start = max(at, free.get(f"tx:{a}", begin), free.get(f"rx:{b}", begin))
        if send > 0:
            start = max(start, free.get(a, begin))
        finish = start + self._transmit(f"tx:{a}", f"rx:{b}", start, amount)
        for node, work in ((a, send), (b, receive)):
            if work > 0:
                node_start = max(start, free.get(node, begin))
                free[node] = node_start + self._run(node, node_start, work)
                busy[node] = busy.get(node, 0.0) + work / self.cluster.share(node)
                finish = max(finish, free[node])
        free[f"tx:{a}"] = free[f"rx:{b}"] = finish
        return finish

    def schedule(self, begin: float = 0.0) -> tuple[float, dict[str, float], dict[tuple[str, str], int]]:
        """(step end, busy seconds per node, bytes per link) of the step started at ``begin``; the links' and
        quotas' buckets carry over from the step scheduled before."""
        n = len(self.tasks)
        waiting = [len(d) for d in self.deps]
        succs: list[list[int]] = [[] for _ in range(n)]
        for i, deps in enumerate(self.deps):
            for d in deps:
                succs[d].append(i)
        ready = [begin] * n
        heap = [(begin, self.tasks[i][3], i) for i in range(n) if not waiting[i]]
        heapq.heapify(heap)
        free: dict[str, float] = {}
        busy: dict[str, float] = {}
        links: dict[tuple[str, str], int] = {}
        end = begin
        while heap:
            at, amount, i = heapq.heappop(heap)
            kind, a, b, _ = self.tasks[i]
            if kind == "cpu":
                start = max(at, free.get(a, begin))
                done = free[a] = start + self._run(a, start, amount)
                busy[a] = busy.get(a, 0.0) + amount / self.cluster.share(a)
            else:
                done = self._transfer(i, at, free, busy, begin) + self.cluster.latency_s
                links[(a, b)] = links.get((a, b), 0) + int(amount)
            end = max(end, done)
            for j in succs[i]:
                ready[j] = max(ready[j], done)
                waiting[j] -= 1
                if not waiting[j]:
                    heapq.heappush(heap, (ready[j], self.tasks[j][3], j))
        return end, busy, links


def predict_step(graph: BlockGraph, costs: LayerCosts, where: Mapping[str, str], variables: str, entry: str,
                 cluster: ClusterModel) -> StepPrediction:
    """The step of ``graph`` with every layer on ``where[layer]``, weights on ``variables``, the training loop
    (and the data, and the loss) on ``entry``."""
    on = {**where, **dict.fromkeys(graph.inputs, entry), "loss": entry}
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        preds.setdefault(dst, []).append(src)
        succs.setdefault(src, []).append(dst)
    act = {name: costs.batch * math.prod(shape) * FLOAT_BYTES for name, shape in graph.shapes.items()}
    g = _StepGraph(cluster)
    remote = sorted({*on.values(), variables} - {entry})
    t = cluster.transport
    # the loop's own work (feeding the batch, the loss), and its dispatch of the step to every remote task
    begin = [g.compute(entry, costs.client_s + t.remote_call_s * len(remote), [])]
    begin += [g.compute(node, t.remote_serve_s, begin[:1]) for node in remote if t.remote_serve_s > 0]
    done = dict.fromkeys(graph.inputs, begin)
    arrived: dict[tuple[str, str], list[int]] = {}  # (layer, node): its output there, sent once for every consumer

    def output_at(src: str, node: str) -> list[int]:
        if (src, node) not in arrived:
            arrived[(src, node)] = g.send(on[src], node, act[src], done[src])
        return arrived[(src, node)]

    for layer in graph.layers:  # forward, in graph order, after this layer's weights have been read
        after = g.send(variables, on[layer], graph.weights.get(layer, (0, 0))[0] * FLOAT_BYTES, begin,
                       graph.weight_tensors(layer)[0])
        for src in preds.get(layer, []):
            after = after + output_at(src, on[layer])
        done[layer] = [g.compute(on[layer], costs.forward.get(layer, 0.0), after)]
    loss = [t for src in preds["loss"] for t in output_at(src, entry)]
    grad = {"loss": loss}
    written: list[int] = []
    for layer in reversed(graph.layers):  # backward: each gradient where its forward op ran
        after = [t for d in succs.get(layer, ["loss"]) for t in g.send(on[d], on[layer], act[layer], grad[d])]
        grad[layer] = [g.compute(on[layer], costs.backward.get(layer, 0.0), after)]
        total = graph.weights.get(layer, (0, 0))[1] * FLOAT_BYTES
        if total:
            written += g.send(on[layer], variables, total, grad[layer], graph.weight_tensors(layer)[1])
    g.compute(variables, costs.apply_s, written + [t for layer in graph.layers for t in grad[layer]])
    end, busy, links = g.schedule()
    if cluster.cpu_period_s > 0:  # the quotas start empty: the next step starts from what this one left
        first = end
        end, busy, links = g.schedule(first)
        end -= first
    return StepPrediction(step_s=end, busy_s=busy, links=links,
                          memory_bytes=node_memory(graph, costs, on, variables, cluster))


def node_memory(graph: BlockGraph, costs: LayerCosts, on: Mapping[str, str], variables: str,
                cluster: ClusterModel) -> dict[str, int]:
    """Bytes per node: the base, plus on the variable node every weight and the optimizer's state, plus on a
    computing node its layers' weights (read), weight gradients, and activations kept for the backward pass
    with their gradients (2 x batch x output size)."""
    slots = OPTIMIZER_SLOTS.get(costs.optimizer, 2)
    mem: dict[str, int] = {variables: cluster.base_bytes}
    for trainable, total in graph.weights.values():
        mem[variables] = mem.get(variables, cluster.base_bytes) + (total + slots * trainable) * FLOAT_BYTES
    for layer in graph.layers:
        node = on[layer]
        trainable, total = graph.weights.get(layer, (0, 0))
        held = 2 * costs.batch * math.prod(graph.shapes[layer]) + trainable + total
        mem[node] = mem.get(node, cluster.base_bytes) + held * FLOAT_BYTES
    return mem
