"""Model-parallel split schemes: which node computes which block of a model (thesis 6.2.3, 6.3.3-6.3.4).

A scheme is data, one YAML file per scheme (the thesis's are in ``configs/splits/``)::

    name: default
    figure: "Fig 6.3(b)"
    description: one worker per branch, a third merges and classifies
    variables: ps:0              # where every weight lives (the thesis's PS)
    input: worker:0              # the node that reads the data and runs the training loop
    placement:                   # block -> node; every block of the model once
      rgb_block1: worker:0
      ...

Blocks may also be split into their layers: a key may name a single layer (``hsi_conv2``), which then
overrides its block's node (Fig 6.15 moves "the first two convolution layers" of the HSI branch). Node names
are ``ps:<i>`` or ``worker:<i>``. Which blocks exist is the model's business (``Experiment.blocks``); anything
unknown is a :class:`~ddl_commodity.errors.ConfigError`.

:func:`boundary_traffic` computes, from tensor shapes alone, the bytes that cross nodes in one training
step: activations forward and their gradients backward at every edge whose ends sit on different nodes,
plus each node's weight reads from and gradient writes to the variable node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from ddl_commodity.errors import ConfigError
from ddl_commodity.models.placement import BlockGraph, Placement, device_of, is_node

SPLITS_DIR = Path(__file__).resolve().parents[2] / "configs" / "splits"
FLOAT_BYTES = 4


@dataclass(frozen=True)
class SplitScheme:
    """A validated scheme; ``layers`` maps every layer of the model to its node."""

    name: str
    figure: str
    description: str
    variables: str
    input: str
    layers: dict[str, str]
    source: str = ""

    @property
    def nodes(self) -> list[str]:
        """Nodes that compute something, in a stable order."""
        return sorted(set(self.layers.values()) | {self.input})

    def placement(self) -> Placement:
        return Placement({k: device_of(v) for k, v in self.layers.items()}, device_of(self.variables))

    def check_cluster(self, workers: int, ps: int = 1) -> None:
        """Refuse a scheme that names a node the run will not have."""
        for node in {*self.layers.values(), self.input, self.variables}:
            job, idx = node.split(":")
            limit = workers if job == "worker" else ps
            if int(idx) >= limit:
                raise ConfigError(f"split scheme {self.name!r} ({self.source}) places work on {node}, but the run "
                                  f"has {workers} workers and {ps} PS")

    def to_dict(self) -> dict:
        return {"name": self.name, "figure": self.figure, "description": self.description,
                "variables": self.variables, "input": self.input, "layers": dict(self.layers), "source": self.source}


def _node(value: object, where: str, source: str) -> str:
    if not isinstance(value, str) or not is_node(value):
        raise ConfigError(f"{source}: {where}: unknown node {value!r} (use ps:<i> or worker:<i>)")
    return value


def parse_scheme(doc: object, source: str, block_map: dict[str, list[str]]) -> SplitScheme:
    """Validate a scheme document against a model's blocks (``block name -> layer names``)."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a split scheme must be a mapping")
    allowed = {"name", "figure", "description", "variables", "input", "placement"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ConfigError(f"{source}: unknown keys {unknown} (allowed: {sorted(allowed)})")
    placement = doc.get("placement")
    if not isinstance(placement, dict) or not placement:
        raise ConfigError(f"{source}: 'placement' must map blocks to nodes")
    variables = _node(str(doc.get("variables", "ps:0")), "variables", source)
    entry = _node(str(doc.get("input", "worker:0")), "input", source)
    all_layers = {layer for ls in block_map.values() for layer in ls}
    layers: dict[str, str] = {}
    for key, node in placement.items():
        _node(node, f"placement.{key}", source)
        if key in block_map:
            for layer in block_map[key]:
                layers.setdefault(layer, node)
        elif key not in all_layers:
            raise ConfigError(f"{source}: placement.{key}: unknown block or layer; blocks are "
                              f"{', '.join(block_map)}")
    for key, node in placement.items():  # layer keys override their block, whatever the key order
        if key in all_layers:
            layers[key] = node
    missing = [b for b, ls in block_map.items() if any(layer not in layers for layer in ls)]
    if missing:
        raise ConfigError(f"{source}: blocks {missing} are not placed on any node")
    name = str(doc.get("name") or Path(source).stem)
    return SplitScheme(name, str(doc.get("figure", "")), str(doc.get("description", "")), variables, entry,
                       layers, source)


def scheme_path(name_or_path: str | Path) -> Path:
    """``configs/splits/<name>.yaml`` for a bare name, else the path itself."""
    path = Path(name_or_path)
    return SPLITS_DIR / f"{name_or_path}.yaml" if not path.suffix else path


def load_scheme(name_or_path: str | Path, block_map: dict[str, list[str]]) -> SplitScheme:
    """A scheme by name (``configs/splits/<name>.yaml``) or by path, checked against ``block_map``."""
    path = scheme_path(name_or_path)
    if not path.is_file():
        known = ", ".join(available_schemes())
        raise ConfigError(f"split scheme {str(name_or_path)!r} not found (known: {known}; or give a path)")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_scheme(doc, str(path), block_map)


def available_schemes() -> list[str]:
    return sorted(p.stem for p in SPLITS_DIR.glob("*.yaml"))


# ---------------------------------------------------------------------------------------------------------
# Traffic from shapes


@dataclass(frozen=True)
class Crossing:
    """One tensor that crosses nodes in a training step."""

    tensor: str
    source: str
    target: str
    forward_bytes: int
    backward_bytes: int


def boundary_traffic(scheme: SplitScheme, graph: BlockGraph, batch: int) -> dict:
    """Bytes per training step across every split boundary and per node, from tensor shapes.

    Activations: ``batch x prod(shape) x 4 B`` forward, the same backward as their gradient (not for the
    model's inputs, which need none). Weights: every node reads the trainable weights of the layers it
    computes from the variable node and writes all of them back (gradients, and BatchNorm's moving statistics).
    """
    where = dict(scheme.layers)
    for name in (*graph.inputs, "loss"):
        where[name] = scheme.input
    crossings: list[Crossing] = []
    for src, dst in graph.edges:
        if where[src] == where[dst]:
            continue
        n = batch * math.prod(graph.shapes[src]) * FLOAT_BYTES
        crossings.append(Crossing(src, where[src], where[dst], n, 0 if src in graph.inputs else n))
    per_node: dict[str, dict[str, int]] = {}

    def add(node: str, key: str, n: int) -> None:
        per_node.setdefault(node, {"rx_bytes": 0, "tx_bytes": 0})[key] += n

    for c in crossings:
        add(c.source, "tx_bytes", c.forward_bytes)
        add(c.target, "rx_bytes", c.forward_bytes)
        add(c.target, "tx_bytes", c.backward_bytes)
        add(c.source, "rx_bytes", c.backward_bytes)
    weights: dict[str, int] = {}
    for layer, (trainable, total) in graph.weights.items():
        node = where[layer]
        if total and node != scheme.variables:
            weights[node] = weights.get(node, 0) + total * FLOAT_BYTES
            add(node, "rx_bytes", trainable * FLOAT_BYTES)
            add(scheme.variables, "tx_bytes", trainable * FLOAT_BYTES)
            add(node, "tx_bytes", total * FLOAT_BYTES)
            add(scheme.variables, "rx_bytes", total * FLOAT_BYTES)
    return {
        "batch": batch,
        "crossings": [c.__dict__ for c in crossings],
        "activation_bytes_per_step": sum(c.forward_bytes + c.backward_bytes for c in crossings),
        "weight_bytes_per_step": sum(2 * v for v in weights.values()),
        "per_node": per_node,
    }
