"""Model-parallel split schemes: which node computes which block of the multimodal CNN (thesis 6.2.3, 6.3.3-6.3.4).

A scheme is data, one YAML file per scheme in ``configs/splits/``::

    name: default
    figure: "Fig 6.3(b)"
    description: one worker per branch, a third merges and classifies
    variables: ps:0              # where every weight lives (the thesis's PS)
    input: worker:0              # the node that reads the local patch file and runs the training loop
    placement:                   # block -> node; every block of models.multimodal_cnn.blocks() once
      rgb_block1: worker:0
      ...

Blocks may also be split into their layers: a key may name a single layer (``hsi_conv2``), which then
overrides its block's node (Fig 6.15 moves "the first two convolution layers" of the HSI branch). Node names
are ``ps:<i>`` or ``worker:<i>``. Anything unknown is a :class:`~ddl_commodity.errors.ConfigError`.

:func:`boundary_traffic` computes, from tensor shapes alone, the bytes that cross nodes in one training
step: activations forward and their gradients backward at every edge whose ends sit on different nodes,
plus each node's weight reads from and gradient writes to the variable node.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ddl_commodity.errors import ConfigError
from ddl_commodity.models.multimodal_cnn import (
    MultimodalSpec,
    Placement,
    blocks,
    branch_layer_names,
    layer_names,
    layer_output_shapes,
    layer_parameter_counts,
)

_NODE = re.compile(r"^(ps|worker):(\d+)$")
SPLITS_DIR = Path(__file__).resolve().parents[2] / "configs" / "splits"
FLOAT_BYTES = 4


def device_of(node: str) -> str:
    """``worker:1`` -> ``/job:worker/replica:0/task:1/device:CPU:0``."""
    m = _NODE.match(node)
    if not m:
        raise ConfigError(f"unknown node {node!r}: use ps:<i> or worker:<i>")
    return f"/job:{m.group(1)}/replica:0/task:{m.group(2)}/device:CPU:0"


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

    def workers_needed(self) -> int:
        return 1 + max(int(n.split(":")[1]) for n in [*self.nodes] if n.startswith("worker:"))

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


def parse_scheme(doc: object, source: str = "<scheme>") -> SplitScheme:
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a split scheme must be a mapping")
    allowed = {"name", "figure", "description", "variables", "input", "placement"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ConfigError(f"{source}: unknown keys {unknown} (allowed: {sorted(allowed)})")
    placement = doc.get("placement")
    if not isinstance(placement, dict) or not placement:
        raise ConfigError(f"{source}: 'placement' must map blocks to nodes")
    block_map, all_layers = blocks(), set(layer_names())
    for key in ("variables", "input"):
        value = str(doc.get(key, "ps:0" if key == "variables" else "worker:0"))
        if not _NODE.match(value):
            raise ConfigError(f"{source}: {key}: unknown node {value!r} (use ps:<i> or worker:<i>)")
    layers: dict[str, str] = {}
    for key, node in placement.items():
        if not isinstance(node, str) or not _NODE.match(node):
            raise ConfigError(f"{source}: placement.{key}: unknown node {node!r} (use ps:<i> or worker:<i>)")
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
    return SplitScheme(name, str(doc.get("figure", "")), str(doc.get("description", "")),
                       str(doc.get("variables", "ps:0")), str(doc.get("input", "worker:0")), layers, source)


def load_scheme(name_or_path: str | Path) -> SplitScheme:
    """A scheme by name (``configs/splits/<name>.yaml``) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SPLITS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SPLITS_DIR.glob("*.yaml")))
        raise ConfigError(f"split scheme {str(name_or_path)!r} not found (known: {known})")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_scheme(doc, str(path))


def available_schemes() -> list[str]:
    return sorted(p.stem for p in SPLITS_DIR.glob("*.yaml"))


# ---------------------------------------------------------------------------------------------------------
# Traffic from shapes


def _edges() -> list[tuple[str, str]]:
    """(producer, consumer) pairs of the network; ``*_input`` are the patches, ``loss`` the training loss."""
    edges = []
    for branch in ("rgb", "hsi"):
        names = [f"{branch}_input", *branch_layer_names(branch)]
        edges += list(itertools.pairwise(names))
        edges.append((names[-1], "merge_concat"))
    merge = ["merge_concat", "merge_fc1", "merge_dropout", "merge_fc2", "merge_classifier", "loss"]
    edges += list(itertools.pairwise(merge))
    return edges


@dataclass(frozen=True)
class Crossing:
    """One tensor that crosses nodes in a training step."""

    tensor: str
    source: str
    target: str
    forward_bytes: int
    backward_bytes: int


def boundary_traffic(scheme: SplitScheme, spec: MultimodalSpec, batch: int) -> dict:
    """Bytes per training step across every split boundary and per node, from tensor shapes.

    Activations: ``batch x prod(shape) x 4 B`` forward, the same backward as their gradient (not for the
    input patches, which need none). Weights: every node reads the weights of the layers it computes from
    the variable node and sends their gradients back (BatchNorm also sends its moving statistics).
    """
    shapes = layer_output_shapes(spec)
    where = dict(scheme.layers)
    where["rgb_input"] = where["hsi_input"] = where["loss"] = scheme.input
    crossings: list[Crossing] = []
    for src, dst in _edges():
        if where[src] == where[dst]:
            continue
        n = batch * _prod(shapes[src]) * FLOAT_BYTES
        backward = 0 if src.endswith("_input") else n
        crossings.append(Crossing(src, where[src], where[dst], n, backward))
    params = layer_parameter_counts(spec)
    per_node: dict[str, dict[str, int]] = {}

    def add(node: str, key: str, n: int) -> None:
        per_node.setdefault(node, {"rx_bytes": 0, "tx_bytes": 0})[key] += n

    for c in crossings:
        add(c.source, "tx_bytes", c.forward_bytes)
        add(c.target, "rx_bytes", c.forward_bytes)
        add(c.target, "tx_bytes", c.backward_bytes)
        add(c.source, "rx_bytes", c.backward_bytes)
    weights: dict[str, int] = {}
    for layer, n in params.items():
        node = where[layer]
        if n and node != scheme.variables:
            trainable = n // 2 if "_bn" in layer else n  # BN: gamma, beta trainable; moving stats written back
            weights[node] = weights.get(node, 0) + n * FLOAT_BYTES
            add(node, "rx_bytes", trainable * FLOAT_BYTES)
            add(scheme.variables, "tx_bytes", trainable * FLOAT_BYTES)
            add(node, "tx_bytes", n * FLOAT_BYTES)
            add(scheme.variables, "rx_bytes", n * FLOAT_BYTES)
    return {
        "batch": batch,
        "crossings": [c.__dict__ for c in crossings],
        "activation_bytes_per_step": sum(c.forward_bytes + c.backward_bytes for c in crossings),
        "weight_bytes_per_step": sum(2 * v for v in weights.values()),
        "per_node": per_node,
    }


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out
