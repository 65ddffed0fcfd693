"""What each layer of a model costs: forward and backward seconds at the run's batch size on one core.

Every layer of the model's :class:`~ddl_commodity.models.placement.BlockGraph` is profiled alone, on random
inputs of the shapes its predecessors produce, in a fresh Python process whose TensorFlow uses one thread
(a node of a commodity cluster has one core, and the toolkit's nodes run TensorFlow on one thread per core
of their share). Times are CPU seconds: what a node's share rations. The same process times the whole
training step, so that what the layers do not account
for (the loss, the optimizer's update of every weight, the framework's per-step work) is measured too:
``apply_s`` (the optimizer, where the weights live) and ``client_s`` (the rest, on the node that runs the
training loop). On a node with a CPU share ``c`` every time is divided by ``c``.

Results are cached per model graph and batch size under ``~/.cache/ddl-commodity/plan-costs/``: profiling
takes tens of seconds, a plan a fraction of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ddl_commodity.models.placement import BlockGraph

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ddl-commodity" / "plan-costs"
#: Timed repetitions per layer (after warm-up); the median is kept.
REPEATS = 15
#: Part of the cache key: a change to how costs are measured invalidates every cached profile.
METHOD_VERSION = 2


@dataclass(frozen=True)
class LayerCosts:
    """Seconds on one full core at ``batch``: ``forward[layer]``, ``backward[layer]`` (the gradient ops
    alone), ``apply_s`` (the optimizer's update of all weights) and ``client_s`` (the step's remainder)."""

    batch: int
    forward: dict[str, float]
    backward: dict[str, float]
    apply_s: float
    client_s: float
    step_s: float  # the whole training step on one core, as measured
    optimizer: str = "adam"

    def to_dict(self) -> dict:
        return asdict(self)


def graph_key(graph: BlockGraph, batch: int, optimizer: str) -> str:
    """A stable hash of what the costs depend on: layers, edges, shapes, weights, batch, optimizer."""
    doc = json.dumps([graph.layers, graph.inputs, graph.edges, sorted(graph.shapes.items()),
                      sorted(graph.weights.items()), batch, optimizer, METHOD_VERSION], sort_keys=True, default=list)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def layer_costs(config_path: Path, graph: BlockGraph, batch: int, optimizer: str,
                cache_dir: Path = CACHE_DIR, refresh: bool = False) -> LayerCosts:
    """The costs of the model of ``config_path`` at ``batch``: from the cache, else profiled in a
    one-thread subprocess (``python -m ddl_commodity.planner.costs``)."""
    cache = cache_dir / f"{graph_key(graph, batch, optimizer)}.json"
    if cache.is_file() and not refresh:
        return LayerCosts(**json.loads(cache.read_text()))
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", "ddl_commodity.planner.costs", str(config_path), str(batch)],
                          capture_output=True, text=True, env=env, timeout=1800, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"profiling the layers of {config_path} failed:\n{proc.stderr[-3000:]}")
    costs = LayerCosts(**json.loads(proc.stdout.strip().splitlines()[-1]))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(costs.to_dict(), indent=1))
    tmp.replace(cache)
    return costs


# ---------------------------------------------------------------------------------------------------------
# The profiling process


def _median_seconds(fn, repeats: int = REPEATS) -> float:
    """CPU seconds of this process per call (median): what a node's CPU share rations, and unlike wall time
    not inflated when other work shares the machine (measured: 1.5-2x under a test suite's load)."""
    import statistics
    import time

    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def _profile_layer(layer, inputs, needs_input_gradient: bool) -> tuple[float, float]:
    """(forward, backward) seconds of one layer on ``inputs`` (a list of tensors). The backward pass takes
    the gradient of the layer's input only where training needs it: not for a layer fed by the data (for
    the land-cover model's first 3D convolution that gradient alone would triple its cost)."""
    import tensorflow as tf

    args = inputs[0] if len(inputs) == 1 else inputs
    wrt = list(inputs) if needs_input_gradient else []

    @tf.function
    def forward():
        return layer(args, training=True)

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            tape.watch(wrt)
            y = layer(args, training=True)
            total = tf.reduce_sum(y)
        return tape.gradient(total, [*wrt, *layer.trainable_variables])

    f = _median_seconds(lambda: forward().numpy())
    fb = _median_seconds(lambda: [g.numpy() for g in forward_backward() if g is not None])
    # a layer without weights or input gradient (e.g. a pooling layer fed by the data) has no backward
    return f, max(0.0, fb - f)


def profile(config_path: str, batch: int) -> LayerCosts:
    """Profile every layer of the config's model, and its whole training step, on this process's threads."""
    import numpy as np
    import tensorflow as tf

    from ddl_commodity.engines.scoring import Objective, model_inputs
    from ddl_commodity.engines.training import compile_for_training, get_optimizer
    from ddl_commodity.experiments.registry import load

    experiment, cfg = load(config_path)
    graph = experiment.block_graph(cfg)
    objective = Objective.of(experiment, cfg)
    model = compile_for_training(experiment.build_model(cfg), cfg.training, objective)
    rng = np.random.default_rng(0)
    x = model_inputs(tuple(rng.standard_normal((batch, *shape)).astype("float32")
                           for shape in experiment.input_shapes(cfg)))
    forward, backward = {}, {}
    for name in graph.layers:
        preds = [src for src, dst in graph.edges if dst == name]
        inputs = [tf.random.normal((batch, *graph.shapes[src])) for src in preds]
        forward[name], backward[name] = _profile_layer(model.get_layer(name), inputs,
                                                       any(src not in graph.inputs for src in preds))
    optimizer = get_optimizer(cfg.training.optimizer, cfg.training.learning_rate)
    optimizer.build(model.trainable_variables)
    labels = np.zeros(batch, dtype=experiment.label_dtype)  # class 0, or a target of 0: the values cost nothing
    loss_fn = objective.batch_loss()

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    grads = [tf.zeros_like(v) for v in model.trainable_variables]

    @tf.function
    def apply():
        optimizer.apply(grads, model.trainable_variables)

    step_s = _median_seconds(lambda: step().numpy())
    apply_s = _median_seconds(lambda: apply())
    client_s = max(0.0, step_s - apply_s - sum(forward.values()) - sum(backward.values()))
    return LayerCosts(batch, forward, backward, apply_s, client_s, step_s, cfg.training.optimizer)


if __name__ == "__main__":
    print(json.dumps(profile(sys.argv[1], int(sys.argv[2])).to_dict()))
