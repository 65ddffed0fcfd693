"""The Fig 6.3 network (shapes, parameter counts per branch) and the split schemes of Figs 6.3-6.18."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import yaml

from ddl_commodity.errors import ConfigError
from ddl_commodity.models.multimodal_layout import (
    MultimodalSpec,
    block_graph,
    blocks,
    layer_output_shapes,
    layer_parameter_counts,
)
from ddl_commodity.models.splits import available_schemes, boundary_traffic, load_scheme, parse_scheme

if TYPE_CHECKING:  # Keras is imported by the tests that build the model, not at collection
    from ddl_commodity.models.multimodal_cnn import MultimodalCNN

BLOCKS = blocks()
THESIS_SCHEMES = {"default", "fig6_7", "fig6_10", "fig6_15", "fig6_18", "single"}


@pytest.fixture(scope="module")
def model() -> MultimodalCNN:
    from ddl_commodity.models.multimodal_cnn import MultimodalCNN

    return MultimodalCNN(MultimodalSpec()).build_on(None)


def test_output_and_branch_shapes(model: MultimodalCNN) -> None:
    import tensorflow as tf

    rgb, hsi = tf.zeros((4, 25, 25, 3)), tf.zeros((4, 25, 25, 11))
    probs = model((rgb, hsi), training=False)
    assert probs.shape == (4, 20)
    np.testing.assert_allclose(probs.numpy().sum(axis=1), 1.0, rtol=1e-5)
    x = tf.expand_dims(hsi, -1)
    for layer in model.branch_layers["hsi"]:
        x = layer(x)
        assert tuple(x.shape[1:]) == layer_output_shapes(model.spec)[layer.name], layer.name
    assert tuple(x.shape) == (4, 1152)
    x = tf.expand_dims(rgb, -1)
    for layer in model.branch_layers["rgb"]:
        x = layer(x)
    assert tuple(x.shape) == (4, 864)


def test_parameter_counts_per_branch(model: MultimodalCNN) -> None:
    by_layer = {layer.name: layer.count_params() for layer in model._flatten_layers(include_self=False)}
    expected = layer_parameter_counts(model.spec)
    for name, n in expected.items():
        assert by_layer[name] == n, name
    rgb = sum(n for k, n in expected.items() if k.startswith("rgb_"))
    hsi = sum(n for k, n in expected.items() if k.startswith("hsi_"))
    # conv: 27 * c_in * f + f; BN: 4 f (gamma, beta, moving mean, moving variance)
    assert rgb == (27 * 16 + 16 + 64) + (27 * 16 * 32 + 32 + 128) + (27 * 32 * 32 + 32 + 128) == 42_304
    assert hsi == (27 * 16 + 16 + 64) + (27 * 16 * 32 + 32 + 128) + (27 * 32 * 64 + 64 + 256) == 70_112
    assert model.count_params() == sum(expected.values()) == 664_244
    graph = block_graph(model.spec)
    for layer in model._flatten_layers(include_self=False):
        if layer.name in graph.layers:  # the planner's weight tensors per layer are the model's variables
            assert graph.weight_tensors(layer.name) == (len(layer.trainable_weights), len(layer.weights)), layer.name


def test_every_layer_belongs_to_exactly_one_block() -> None:
    names = [n for layers in blocks().values() for n in layers]
    assert len(names) == len(set(names)) == 27


def test_thesis_schemes_are_all_present_and_place_every_block() -> None:
    assert set(available_schemes()) >= THESIS_SCHEMES
    all_layers = {n for layers in blocks().values() for n in layers}
    for name in THESIS_SCHEMES:
        scheme = load_scheme(name, BLOCKS)
        assert set(scheme.layers) == all_layers, name
        assert scheme.variables == "ps:0"
        assert scheme.figure, name
        scheme.check_cluster(workers=3)


def test_scheme_figures_move_what_the_thesis_says() -> None:
    default, f67, f610 = load_scheme("default", BLOCKS), load_scheme("fig6_7", BLOCKS), load_scheme("fig6_10", BLOCKS)
    f615, f618 = load_scheme("fig6_15", BLOCKS), load_scheme("fig6_18", BLOCKS)
    assert {default.layers[f"hsi_conv{i}"] for i in (1, 2, 3)} == {"worker:1"}
    assert f67.layers["hsi_conv1"] == "worker:1" and f67.layers["hsi_conv2"] == f67.layers["merge_fc1"]
    assert f610.layers["rgb_conv3"] == f610.layers["hsi_conv3"] == f610.layers["merge_fc1"]
    assert f615.layers["hsi_conv2"] == f615.layers["rgb_conv1"] != f615.layers["hsi_pool2"]
    assert f615.layers["hsi_conv3"] == "worker:1" and f615.layers["hsi_pool3"] == f615.layers["merge_fc1"]
    assert f618.layers["hsi_bn1"] == f618.layers["rgb_conv1"] and f618.layers["hsi_conv2"] == "worker:1"
    assert set(load_scheme("single", BLOCKS).layers.values()) == {"worker:0"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"placement": {"hsi_block9": "worker:1"}}, "unknown block or layer"),
        ({"placement": {"merge": "worker:x"}}, "unknown node"),
        ({"placement": {"merge": "gpu:0"}}, "unknown node"),
        ({"colour": "blue"}, "unknown keys"),
        ({"variables": "ps"}, "unknown node"),
    ],
)
def test_bad_schemes_are_config_errors(change: dict, message: str) -> None:
    doc = yaml.safe_load((Path(load_scheme("default", BLOCKS).source)).read_text())
    for key, value in change.items():
        if key == "placement":
            doc["placement"].update(value)
        else:
            doc[key] = value
    with pytest.raises(ConfigError, match=message):
        parse_scheme(doc, "bad.yaml", BLOCKS)


def test_unplaced_block_and_missing_node_are_config_errors() -> None:
    doc = yaml.safe_load(Path(load_scheme("default", BLOCKS).source).read_text())
    del doc["placement"]["merge"]
    with pytest.raises(ConfigError, match=r"merge.*not placed"):
        parse_scheme(doc, "bad.yaml", BLOCKS)
    with pytest.raises(ConfigError, match="has 2 workers"):
        load_scheme("default", BLOCKS).check_cluster(workers=2)
    with pytest.raises(ConfigError, match="not found"):
        load_scheme("fig9_99", BLOCKS)


def test_boundary_traffic_from_shapes() -> None:
    spec = MultimodalSpec()
    single = boundary_traffic(load_scheme("single", BLOCKS), block_graph(spec), 50)
    assert single["crossings"] == [] and single["activation_bytes_per_step"] == 0
    default = boundary_traffic(load_scheme("default", BLOCKS), block_graph(spec), 50)
    crossing = {c["tensor"]: c for c in default["crossings"]}
    # HSI patches go to the HSI worker (no gradient back); flattened HSI features go to the merger and back.
    assert crossing["hsi_input"]["forward_bytes"] == 50 * 25 * 25 * 11 * 4
    assert crossing["hsi_input"]["backward_bytes"] == 0
    assert crossing["hsi_dropout"]["forward_bytes"] == crossing["hsi_dropout"]["backward_bytes"] == 50 * 1152 * 4
    assert crossing["merge_classifier"]["target"] == "worker:0"  # the loss is computed by the client
    # Fig 6.7 moves an earlier, larger HSI activation across: more activation traffic than the default.
    assert boundary_traffic(load_scheme("fig6_7", BLOCKS), block_graph(spec), 50)["activation_bytes_per_step"] > \
        default["activation_bytes_per_step"]
    # Activation traffic scales with the batch, weight traffic does not (Fig 6.5's batch-size effect).
    small = boundary_traffic(load_scheme("default", BLOCKS), block_graph(spec), 10)
    assert small["activation_bytes_per_step"] * 5 == default["activation_bytes_per_step"]
    assert small["weight_bytes_per_step"] == default["weight_bytes_per_step"]
