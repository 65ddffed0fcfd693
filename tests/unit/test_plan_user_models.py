"""The planner's profiler on a model no one tuned it for: ``examples/two_inputs.py`` (16 tabular features and a
(40, 3) trace, three blocks), in this process on a narrow model and a small batch (seconds, not the tens of
seconds of a one-core profile). Its inputs go in the declared order, its step runs with the experiment's
loss, and what cannot be profiled is one line naming why."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddl_commodity.experiments.api import Experiment
from ddl_commodity.experiments.registry import load
from ddl_commodity.planner.costs import declared_input_shapes, describe_loss, graph_key, profile_experiment
from ddl_commodity.planner.errors import PlanError, one_line

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "examples" / "two-inputs-model-parallel.yaml"
#: The narrowest model and a batch of 8: the layers' times are not what these tests check.
SMALL = {"model": {"filters": 2, "units": 4},
         "training": {"split": str(REPO / "examples" / "splits" / "two-inputs-three-workers.yaml")}}


def small(experiment: str | None = None) -> tuple[Experiment, object]:
    return load(CONFIG, {**SMALL, **({"experiment": experiment} if experiment else {})})


def test_inputs_are_profiled_in_the_order_the_model_declares_them() -> None:
    experiment, cfg = small()
    graph = experiment.block_graph(cfg)
    model = experiment.build_model(cfg)
    # the graph lists inputs by depth: the deeper trace branch's first, against Model([tabular, trace], ...)
    assert graph.inputs == ["trace", "tabular"]
    assert graph.tensors["tab_dense"] == (2, 2) and graph.tensors["trace_pool"] == (0, 0)  # kernel and bias
    assert declared_input_shapes(experiment, cfg, model, graph) == [(16,), (40, 3)]
    costs = profile_experiment(experiment, cfg, batch=8, repeats=2)
    assert set(costs.forward) == set(graph.layers) == {layer for b in experiment.blocks(cfg).values() for layer in b}
    assert sorted(experiment.blocks(cfg)) == ["head", "tab", "trace"]
    assert all(t > 0 for t in costs.forward.values()) and costs.step_s > 0
    assert costs.loss == "sparse_categorical_crossentropy" and costs.batch == 8
    # scoring: one inference pass over a batch of 256 samples, cheaper than 32 training batches' forward passes
    assert 0 < costs.eval_s < 32 * sum(costs.forward.values())


def test_the_step_is_timed_with_the_experiment_s_loss() -> None:
    from tests import plan_experiments

    experiment, cfg = small("tests.plan_experiments:CountedLossRegression")
    plan_experiments.LOSS_CALLS.clear()
    costs = profile_experiment(experiment, cfg, batch=8, repeats=2)
    assert plan_experiments.LOSS_CALLS  # traced into the step: not a softmax classifier's cross-entropy
    assert costs.loss == "tests.plan_experiments.counted_mae" and "head_z" in costs.forward


def test_a_step_the_loss_cannot_take_is_one_line_naming_it() -> None:
    experiment, cfg = small("tests.plan_experiments:OneHotLossClassifier")
    with pytest.raises(PlanError) as err:
        profile_experiment(experiment, cfg, batch=8, repeats=2)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("a training step with loss categorical_crossentropy on random inputs of shape "
                              "(8, 16), (8, 40, 3) fails: ValueError: Arguments `target` and `output` must have "
                              "the same rank"), message


def test_profiles_of_two_losses_are_cached_apart() -> None:
    import keras

    experiment, cfg = small()
    graph = experiment.block_graph(cfg)
    keys = {graph_key(graph, 32, "adam", describe_loss(loss)) for loss in
            ("mse", keras.losses.Huber(0.1), keras.losses.Huber(1.0), keras.losses.mean_absolute_error)}
    assert len(keys) == 4
    assert describe_loss(keras.losses.Huber(0.1)).startswith("Huber{")


def test_one_line_keeps_the_reason_and_drops_the_frames() -> None:
    tf_error = ValueError("in user code:\n\n    File \"costs.py\", line 3, in step  *\n        loss = ...\n\n"
                          "    ValueError: Input 0 with name 'tabular' is incompatible\n")
    assert one_line(tf_error) == "ValueError: Input 0 with name 'tabular' is incompatible"
    assert one_line(KeyError("x")) == "KeyError: 'x'"
    assert one_line("c.yaml: invalid configuration\n  training.split: not found") == \
        "c.yaml: invalid configuration; training.split: not found"
    assert len(one_line(RuntimeError("x" * 1000))) == 400


def test_the_multi_branch_example_profiles_four_blocks_two_inputs_and_its_huber_loss() -> None:
    """``examples/field_yield.py``: three branches (two on the same input) and a head, a regression."""
    experiment, cfg = load(REPO / "examples" / "field-yield-model-parallel.yaml", {
        "model": {"filters": 2, "units": 4},
        "training": {"split": str(REPO / "examples" / "splits" / "field-yield-three-workers.yaml")}})
    graph = experiment.block_graph(cfg)
    model = experiment.build_model(cfg)
    assert sorted(experiment.blocks(cfg)) == ["field", "head", "season", "weather"]
    assert declared_input_shapes(experiment, cfg, model, graph) == [(24, 24, 4), (52, 3)]
    assert {dst for src, dst in graph.edges if src == "weather"} == {"weather_conv1", "season_flatten"}
    costs = profile_experiment(experiment, cfg, batch=8, repeats=2)
    assert costs.loss.startswith("Huber") and set(costs.forward) == set(graph.layers)
    assert not experiment.classification and costs.step_s > 0
