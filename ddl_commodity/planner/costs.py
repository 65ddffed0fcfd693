"""What each layer of a model costs: forward and backward seconds at the run's batch size on one core.

Every layer of the model's :class:`~ddl_commodity.models.placement.BlockGraph` is profiled alone, on random
inputs of the shapes its predecessors produce, in a fresh Python process whose TensorFlow uses one thread
(a node of a commodity cluster has one core, and the toolkit's nodes run TensorFlow on one thread per core
of their share). Times are CPU seconds: what a node's share rations. The same process times the whole
training step, with the loss the experiment trains with (:meth:`~ddl_commodity.experiments.api.Experiment.loss`),
so that what the layers do not account
for (the loss, the optimizer's update of every weight, the framework's per-step work) is measured too:
``apply_s`` (the optimizer, where the weights live) and ``client_s`` (the rest, on the node that runs the
training loop). On a node with a CPU share ``c`` every time is divided by ``c``.

Results are cached per model graph, batch size, optimizer and loss under ``~/.cache/ddl-commodity/plan-costs/``:
profiling takes tens of seconds, a plan a fraction of one. A model the profiler cannot run is a
:class:`~ddl_commodity.planner.errors.PlanError` naming the layer or step and the exception, with the
profiling process's whole output in a log file next to the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddl_commodity.errors import DdlError
from ddl_commodity.experiments.api import Experiment
from ddl_commodity.models.placement import BlockGraph
from ddl_commodity.planner.errors import PlanError, one_line, write_log

if TYPE_CHECKING:
    import keras

    from ddl_commodity.config import RunConfig

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ddl-commodity" / "plan-costs"
#: Timed repetitions per layer (after warm-up); the median is kept.
REPEATS = 15
#: Part of the cache key: a change to how costs are measured invalidates every cached profile.
METHOD_VERSION = 4
#: The profiling process's limit: the thesis-size land-cover model takes about a minute.
PROFILE_TIMEOUT_S = 1800


@dataclass(frozen=True)
class LayerCosts:
    """Seconds on one full core at ``batch``: ``forward[layer]``, ``backward[layer]`` (the gradient ops
    alone), ``apply_s`` (the optimizer's update of all weights) and ``client_s`` (the step's remainder).
    ``loss`` names the loss the step was timed with (:func:`describe_loss`); ``eval_s``: one inference pass
    (``training=False``) over :data:`~ddl_commodity.engines.scoring.EVAL_BATCH` samples, the batch the
    engines score held-out data in."""

    batch: int
    forward: dict[str, float]
    backward: dict[str, float]
    apply_s: float
    client_s: float
    step_s: float  # the whole training step on one core, as measured
    optimizer: str = "adam"
    loss: str = ""
    eval_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def describe_loss(loss: Any) -> str:
    """A stable text for a Keras loss as :meth:`Experiment.loss` returns it: a name as it is, a
    ``keras.losses.Loss`` as its class and settings (a Huber loss's delta changes nothing of the cost, but two
    losses must not share a cached profile by accident), a function as its dotted name."""
    if isinstance(loss, str):
        return loss
    if callable(getattr(loss, "get_config", None)):
        try:
            settings = dict(loss.get_config())
        except Exception:  # a user's Loss whose get_config needs arguments it lacks: its class alone
            settings = {}
        # Keras's own losses (Huber, ...) wrap a function and keep its arguments apart from get_config's
        wrapped = getattr(loss, "_fn_kwargs", None)
        if isinstance(wrapped, dict):
            settings.update({k: v for k, v in wrapped.items() if isinstance(v, str | int | float | bool)})
        return f"{type(loss).__name__}{json.dumps(settings, sort_keys=True, default=str)}"
    return f"{getattr(loss, '__module__', '?')}.{getattr(loss, '__qualname__', type(loss).__name__)}"


def graph_key(graph: BlockGraph, batch: int, optimizer: str, loss: str = "") -> str:
    """A stable hash of what the costs depend on: layers, edges, shapes, weights, batch, optimizer, loss."""
    doc = json.dumps([graph.layers, graph.inputs, graph.edges, sorted(graph.shapes.items()),
                      sorted(graph.weights.items()), batch, optimizer, loss, METHOD_VERSION],
                     sort_keys=True, default=list)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def layer_costs(config_path: Path, graph: BlockGraph, batch: int, optimizer: str, loss: str = "",
                cache_dir: Path = CACHE_DIR, refresh: bool = False) -> LayerCosts:
    """The costs of the model of ``config_path`` at ``batch``: from the cache, else profiled in a
    one-thread subprocess (``python -m ddl_commodity.planner.costs``).

    Args:
        config_path: the experiment YAML the subprocess loads.
        graph: its model's block graph; with ``batch``, ``optimizer`` and ``loss`` (:func:`describe_loss`)
            the cache key.
        cache_dir: where profiles (``<key>.json``) and failed profilings' output (``<key>.log``) go.
        refresh: profile again even if cached.

    Raises:
        PlanError: the model cannot be profiled; one line naming why and the log file.
    """
    key = graph_key(graph, batch, optimizer, loss)
    cache = cache_dir / f"{key}.json"
    if cache.is_file() and not refresh:
        try:
            return LayerCosts(**json.loads(cache.read_text()))
        except (ValueError, TypeError):  # a profile of an older layout or a torn file: measure again
            pass
    costs = _run_profiler(config_path, batch, cache_dir / f"{key}.log")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(costs.to_dict(), indent=1))
    tmp.replace(cache)
    return costs


def _run_profiler(config_path: Path, batch: int, log: Path) -> LayerCosts:
    """Run the profiling process; its last stdout line is the costs, or ``{"error": one line}``."""
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "ddl_commodity.planner.costs", str(config_path), str(batch)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=PROFILE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as err:
        write_log(log, f"$ {' '.join(cmd)}\n--- stdout\n{err.stdout or ''}\n--- stderr\n{err.stderr or ''}")
        raise PlanError(f"profiling the layers of {config_path} took more than {PROFILE_TIMEOUT_S} s and was "
                        f"stopped: try a smaller training.batch_size (its output: {log})") from None
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if proc.returncode == 0 and isinstance(result, dict) and "forward" in result:
        return LayerCosts(**result)
    write_log(log, f"$ {' '.join(cmd)}\nexit code {proc.returncode}\n--- stdout\n{proc.stdout}\n"
                   f"--- stderr\n{proc.stderr}")
    if isinstance(result, dict) and result.get("error"):
        reason = str(result["error"])
    elif proc.returncode < 0:  # e.g. the kernel's OOM killer: no Python left to say why
        reason = f"the profiling process was killed by signal {-proc.returncode} (out of memory?)"
    else:
        reason = one_line(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else
                          f"exit code {proc.returncode}")
    raise PlanError(f"profiling the layers of {config_path} failed: {reason} (its output: {log})")


# ---------------------------------------------------------------------------------------------------------
# The profiling process


def _median_seconds(fn, repeats: int = REPEATS) -> float:
    """CPU seconds of this process per call (median): what a node's CPU share rations, and unlike wall time
    not inflated (1.5-2x on a loaded machine) when other work shares the machine."""
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


def _profile_layer(layer, inputs, needs_input_gradient: bool, repeats: int = REPEATS) -> tuple[float, float]:
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

    f = _median_seconds(lambda: forward().numpy(), repeats)
    fb = _median_seconds(lambda: [g.numpy() for g in forward_backward() if g is not None], repeats)
    # a layer without weights or input gradient (e.g. a pooling layer fed by the data) has no backward
    return f, max(0.0, fb - f)


def declared_input_shapes(experiment: Experiment, cfg: RunConfig, model: keras.Model,
                          graph: BlockGraph) -> list[tuple[int, ...]]:
    """Per-sample shapes of ``model``'s inputs in the order the model is called with them (as the engines
    feed the experiment's ``load`` arrays).

    The block graph lists a functional model's inputs by depth, the input of the deepest branch first, which
    need not be the declared order (``Model([tabular, trace], ...)`` with the deeper trace branch): so a
    functional model's declared inputs are matched to the graph's shapes by name. An experiment that
    overrides :meth:`Experiment.input_shapes` (a subclassed model has no declared inputs) is taken at its word.

    Returns:
        one ``(d1, ..., dk)`` per model input, without the batch axis.
    """
    declared = None if type(experiment).input_shapes is not Experiment.input_shapes else \
        getattr(model, "inputs", None)
    if not declared:
        return [tuple(shape) for shape in experiment.input_shapes(cfg)]
    shapes = []
    for tensor in declared:
        name = tensor._keras_history.operation.name  # the input layer's name, as the block graph has it
        shape = graph.shapes.get(name, tuple(tensor.shape[1:]))
        if any(d is None for d in shape):
            raise PlanError(f"model input {name!r} has shape {tuple(tensor.shape)}: the planner needs every "
                            "dimension but the batch fixed")
        shapes.append(tuple(int(d) for d in shape))
    return shapes


def _layer_times(model: keras.Model, graph: BlockGraph, batch: int,
                 repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """``(forward, backward)`` seconds of every layer of ``graph``, each alone on random ``(batch, ...)``
    inputs of its predecessors' shapes; a layer that cannot run so is a :class:`PlanError` naming it."""
    import tensorflow as tf

    forward, backward = {}, {}
    for name in graph.layers:
        preds = [src for src, dst in graph.edges if dst == name]
        shapes = [(batch, *graph.shapes[src]) for src in preds]
        try:
            inputs = [tf.random.normal(shape) for shape in shapes]
            forward[name], backward[name] = _profile_layer(model.get_layer(name), inputs,
                                                           any(src not in graph.inputs for src in preds), repeats)
        except Exception as err:
            raise PlanError(f"layer {name!r} cannot be profiled alone on random float inputs of shape "
                            f"{', '.join(map(str, shapes))}: {one_line(err)}") from err
    return forward, backward


def _step_times(model: keras.Model, x: Any, labels: Any, loss_fn: Any, cfg: RunConfig,
                repeats: int) -> tuple[float, float]:
    """``(step_s, apply_s)``: a whole training step of ``model`` on ``(x, labels)`` with ``loss_fn``, and the
    optimizer's update of every weight alone."""
    import tensorflow as tf

    from ddl_commodity.engines.training import get_optimizer

    optimizer = get_optimizer(cfg.training.optimizer, cfg.training.learning_rate)
    optimizer.build(model.trainable_variables)

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

    return _median_seconds(lambda: step().numpy(), repeats), _median_seconds(lambda: apply(), repeats)


def profile_experiment(experiment: Experiment, cfg: RunConfig, batch: int, repeats: int = REPEATS) -> LayerCosts:
    """Profile every layer of the experiment's model, and its whole training step with the experiment's loss,
    on this process's threads.

    Args:
        experiment, cfg: what to profile; the model is ``experiment.build_model(cfg)``.
        batch: the batch size every time is measured at.
        repeats: timed calls per measurement (after 3 warm-up calls); the median is kept.

    Raises:
        PlanError: the model does not build, a layer or the training step does not run on random inputs.
    """
    import numpy as np

    from ddl_commodity.engines.scoring import Objective, model_inputs
    from ddl_commodity.engines.training import compile_for_training

    try:
        objective = Objective.of(experiment, cfg)
        graph = experiment.block_graph(cfg)
        model = compile_for_training(experiment.build_model(cfg), cfg.training, objective)
    except Exception as err:
        raise PlanError(f"the model or loss of experiment {cfg.experiment} cannot be built: {one_line(err)}") from err
    shapes = declared_input_shapes(experiment, cfg, model, graph)
    forward, backward = _layer_times(model, graph, batch, repeats)
    rng = np.random.default_rng(0)
    x = model_inputs([rng.standard_normal((batch, *shape)).astype("float32") for shape in shapes])
    labels = np.zeros(batch, dtype=experiment.label_dtype)  # class 0, or a target of 0: the values cost nothing
    loss = describe_loss(objective.loss)
    try:
        step_s, apply_s = _step_times(model, x, labels, objective.batch_loss(), cfg, repeats)
    except Exception as err:
        raise PlanError(f"a training step with loss {loss} on random inputs of shape "
                        f"{', '.join(str((batch, *s)) for s in shapes)} fails: {one_line(err)}") from err
    client_s = max(0.0, step_s - apply_s - sum(forward.values()) - sum(backward.values()))
    try:
        eval_s = _eval_seconds(model, shapes, max(3, repeats // 3))
    except Exception as err:
        raise PlanError(f"an inference pass of the model on random inputs of shape "
                        f"{', '.join(str(s) for s in shapes)} fails: {one_line(err)}") from err
    return LayerCosts(batch, forward, backward, apply_s, client_s, step_s, cfg.training.optimizer, loss, eval_s)


def _eval_seconds(model: keras.Model, shapes: list[tuple[int, ...]], repeats: int) -> float:
    """One inference pass of ``model`` over :data:`EVAL_BATCH` random samples: how the engines score the
    held-out set (fewer repeats: the batch is several training batches' worth)."""
    import numpy as np
    import tensorflow as tf

    from ddl_commodity.engines.scoring import EVAL_BATCH, model_inputs

    rng = np.random.default_rng(1)
    x = model_inputs([rng.standard_normal((EVAL_BATCH, *shape)).astype("float32") for shape in shapes])

    @tf.function
    def infer():
        return model(x, training=False)

    return _median_seconds(lambda: infer().numpy(), repeats)


def profile(config_path: str, batch: int) -> LayerCosts:
    """:func:`profile_experiment` of the experiment and config of ``config_path``."""
    from ddl_commodity.experiments.registry import load

    experiment, cfg = load(config_path)
    return profile_experiment(experiment, cfg, batch)


def main(argv: list[str]) -> int:
    """``python -m ddl_commodity.planner.costs CONFIG BATCH``: the costs as the last stdout line, or
    ``{"error": one line}`` there and the traceback on stderr (exit code 3)."""
    try:
        costs = profile(argv[0], int(argv[1]))
    except Exception as err:
        traceback.print_exc()
        # the toolkit's own errors say what they are; another exception is named by its type
        print(json.dumps({"error": one_line(str(err)) if isinstance(err, DdlError) else one_line(err)}))
        return 3
    print(json.dumps(costs.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
