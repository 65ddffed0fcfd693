"""Where a model's layers run: device placement and the layer graph that split-boundary traffic is read from.

Keras 3 forgets construction-time ``tf.device`` scopes and builds variables lazily on whatever device is
current at their first use, so placement is applied at call time (:func:`place_functional` for any
functional model; :class:`~ddl_commodity.models.multimodal_cnn.MultimodalCNN` does it in its own ``call``)
and variables are created under the variable device (the PS) before the first placed call.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

_NODE = re.compile(r"^(ps|worker):(\d+)$")


def is_node(name: str) -> bool:
    """``ps:<i>`` or ``worker:<i>``."""
    return bool(_NODE.match(name))


def device_of(node: str) -> str:
    """``worker:1`` -> ``/job:worker/replica:0/task:1/device:CPU:0``."""
    m = _NODE.match(node)
    if not m:
        raise ValueError(f"unknown node {node!r}: use ps:<i> or worker:<i>")
    return f"/job:{m.group(1)}/replica:0/task:{m.group(2)}/device:CPU:0"


def device_scope(device: str | None):
    """``tf.device(device)``, or no scope at all for ``None`` (wherever the caller runs)."""
    import tensorflow as tf

    return tf.device(device) if device else contextlib.nullcontext()


@dataclass
class Placement:
    """Layer name -> device string (``None``: wherever the caller runs). ``variables``: where weights live."""

    layers: Mapping[str, str | None] = field(default_factory=dict)
    variables: str | None = None

    def device(self, layer: str) -> str | None:
        return self.layers.get(layer)

    def scope(self, layer: str):
        return device_scope(self.device(layer))


@dataclass(frozen=True)
class BlockGraph:
    """A model as data: its layers in order, the edges between them, per-sample output shapes, weights.

    ``inputs`` are pseudo-layers for the model's inputs (placed on the input node), ``"loss"`` is the
    pseudo-layer after the output. ``weights[layer] = (trainable, total)`` counts of weight scalars;
    ``tensors[layer] = (trainable, total)`` counts of weight variables (a kernel and a bias are two).
    """

    layers: list[str]
    inputs: list[str]
    edges: list[tuple[str, str]]
    shapes: dict[str, tuple[int, ...]]
    weights: dict[str, tuple[int, int]]
    tensors: dict[str, tuple[int, int]] = field(default_factory=dict)

    def weight_tensors(self, layer: str) -> tuple[int, int]:
        """(trainable, total) weight variables of ``layer``; one per kind it has where ``tensors`` is silent."""
        if layer in self.tensors:
            return self.tensors[layer]
        trainable, total = self.weights.get(layer, (0, 0))
        return int(trainable > 0), int(trainable > 0) + int(total > trainable)


def functional_graph(model: keras.Model) -> BlockGraph:
    """The :class:`BlockGraph` of a built functional Keras model (from its nodes, not from its source)."""
    import math

    layers, inputs, edges, shapes, weights, tensors = [], [], [], {}, {}, {}
    for depth in sorted(model._nodes_by_depth, reverse=True):  # inputs first
        for node in model._nodes_by_depth[depth]:
            op = node.operation
            shapes[op.name] = tuple(int(d) for d in node.outputs[0].shape[1:])
            if node.is_input:
                inputs.append(op.name)
                continue
            layers.append(op.name)
            edges += [(t._keras_history.operation.name, op.name) for t in node.input_tensors]
            trainable = sum(math.prod(w.shape) for w in op.trainable_weights)
            weights[op.name] = (trainable, trainable + sum(math.prod(w.shape) for w in op.non_trainable_weights))
            tensors[op.name] = (len(op.trainable_weights), len(op.weights))
    edges += [(t._keras_history.operation.name, "loss") for t in model.outputs]
    return BlockGraph(layers, inputs, edges, shapes, weights, tensors)


def place_functional(model: keras.Model, placement: Placement) -> keras.Model:
    """A model that runs ``model``'s layers (shared, with their weights) each under its placement's device."""
    import keras

    class PlacedFunctional(keras.Model):
        def __init__(self) -> None:
            super().__init__(name=f"placed_{model.name}")
            self.inner = model

        def call(self, inputs, training=None):
            from keras.src.models.functional import operation_fn

            def placed(op):
                run = operation_fn(op, training=training)

                def call(*args, **kwargs):
                    with placement.scope(op.name):
                        return run(*args, **kwargs)

                return call

            # Functional.call without its masking: the graph walk is Keras's own (private, checked by
            # tests/integration/test_byom.py, which proves where each block ran).
            outputs = self.inner._run_through_graph(self.inner._standardize_inputs(inputs), operation_fn=placed)
            return outputs[0] if isinstance(outputs, list | tuple) and len(outputs) == 1 else outputs

    return PlacedFunctional()
