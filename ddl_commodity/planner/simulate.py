"""Predict one model-parallel training step of a placement: step time, per-node CPU and memory, per-link bytes.

The step is simulated as TensorFlow runs it on the toolkit's model-parallel engine (thesis 6.2.3): weights
live on the variable node (the PS); every node reads the weights of the layers it computes at the start of
the step; the forward pass runs layer by layer in graph order, each layer on its node once its inputs have
arrived; the loss is taken on the input node; the backward pass runs in reverse, each layer's gradient op
on its forward op's node; every layer's weight gradients go back to the PS, which applies them all.

A node is one core at its CPU share ``c``: it runs one op at a time, and a layer that takes ``t`` seconds on
a full core takes ``t / c`` there. A transfer of ``n`` bytes between two nodes occupies the sender's outgoing
and the receiver's incoming link (full duplex, ``n / bandwidth`` seconds each) and arrives ``latency``
seconds after it left; transfers within a node are free. What is not modelled: TensorFlow running two
independent ops of one node at once (one core cannot), the CPU that sending costs, and cache effects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ddl_commodity.models.placement import BlockGraph
from ddl_commodity.planner.costs import LayerCosts

FLOAT_BYTES = 4
#: Optimizer state per trainable weight, in weights (Adam keeps two moments).
OPTIMIZER_SLOTS = {"adam": 2, "rmsprop": 1, "momentum": 1, "sgd": 0}


@dataclass(frozen=True)
class ClusterModel:
    """The emulated cluster: every node's CPU share, one link rate, a per-message latency, memory per node.

    ``base_bytes``: what a node uses before it holds any of the model (its Spark executor JVM, the TF server
    and runtime); ``memory_cap``: the node's memory (None: no cap)."""

    cpu_share: float = 1.0
    bandwidth_bps: float = 1e9
    latency_s: float = 0.002
    base_bytes: int = 700 * 2**20
    memory_cap: int | None = 2 * 2**30
    ps_cpu_share: float | None = None

    @property
    def bytes_per_s(self) -> float:
        return self.bandwidth_bps / 8.0

    def share(self, node: str) -> float:
        return self.ps_cpu_share if node.startswith("ps:") and self.ps_cpu_share else self.cpu_share


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


class _Timeline:
    """Nodes and links as resources that are busy until a time."""

    def __init__(self, cluster: ClusterModel) -> None:
        self.cluster = cluster
        self.node_free: dict[str, float] = {}
        self.tx_free: dict[str, float] = {}
        self.rx_free: dict[str, float] = {}
        self.busy: dict[str, float] = {}
        self.links: dict[tuple[str, str], int] = {}

    def compute(self, node: str, ready: float, seconds: float) -> float:
        duration = seconds / self.cluster.share(node)
        start = max(ready, self.node_free.get(node, 0.0))
        self.node_free[node] = start + duration
        self.busy[node] = self.busy.get(node, 0.0) + duration
        return start + duration

    def send(self, src: str, dst: str, nbytes: int, ready: float) -> float:
        if src == dst or nbytes <= 0:
            return ready
        start = max(ready, self.tx_free.get(src, 0.0), self.rx_free.get(dst, 0.0))
        end = start + nbytes / self.cluster.bytes_per_s
        self.tx_free[src] = self.rx_free[dst] = end
        self.links[(src, dst)] = self.links.get((src, dst), 0) + nbytes
        return end + self.cluster.latency_s


def predict_step(graph: BlockGraph, costs: LayerCosts, where: Mapping[str, str], variables: str, entry: str,
                 cluster: ClusterModel) -> StepPrediction:
    """The step of ``graph`` with every layer on ``where[layer]``, weights on ``variables``, the training loop
    (and the data, and the loss) on ``entry``."""
    b = costs.batch
    on = {**where, **dict.fromkeys(graph.inputs, entry), "loss": entry}
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        preds.setdefault(dst, []).append(src)
        succs.setdefault(src, []).append(dst)
    act = {name: b * _prod(shape) * FLOAT_BYTES for name, shape in graph.shapes.items()}
    t = _Timeline(cluster)
    t.compute(entry, 0.0, costs.client_s)  # the loop's own work: feeding the batch, the loss, dispatch
    start = t.node_free[entry]
    weights_at = {layer: t.send(variables, on[layer], graph.weights.get(layer, (0, 0))[0] * FLOAT_BYTES, start)
                  for layer in graph.layers}
    done = dict.fromkeys(graph.inputs, start)
    for layer in graph.layers:  # forward, in graph order
        ready = max([weights_at[layer], *(t.send(on[s], on[layer], act[s], done[s]) for s in preds.get(layer, []))])
        done[layer] = t.compute(on[layer], ready, costs.forward.get(layer, 0.0))
    grad_done = {"loss": max(t.send(on[s], entry, act[s], done[s]) for s in preds["loss"])}
    written = []
    for layer in reversed(graph.layers):  # backward: each gradient where its forward op ran
        ready = max(t.send(on[d], on[layer], act[layer], grad_done[d]) for d in succs[layer])
        grad_done[layer] = t.compute(on[layer], ready, costs.backward.get(layer, 0.0))
        total = graph.weights.get(layer, (0, 0))[1] * FLOAT_BYTES
        if total:
            written.append(t.send(on[layer], variables, total, grad_done[layer]))
    end = t.compute(variables, max(written, default=grad_done[graph.layers[0]]), costs.apply_s)
    return StepPrediction(step_s=end, busy_s=dict(t.busy), links=dict(t.links),
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
        held = 2 * costs.batch * _prod(graph.shapes[layer]) + trainable + total
        mem[node] = mem.get(node, cluster.base_bytes) + held * FLOAT_BYTES
    return mem


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out
