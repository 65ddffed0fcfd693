"""The two-branch multimodal 3D CNN's layout as data, without TensorFlow (thesis 6.2.2, Figs 6.2, 6.3): its
sizes, layer and block names, per-sample shapes, weight counts and block graph.

What a split scheme is checked against, what boundary traffic and the planner compute from, and what ``ddl
run`` reads before anything starts: importing Keras costs 2 CPU-s, which checking a split must not pay. The
Keras model itself is :mod:`ddl_commodity.models.multimodal_cnn`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ddl_commodity.models.placement import BlockGraph

NUM_CLASSES = 20

#: Pooling per block (rows, cols, bands): RGB keeps its 3 bands, HSI halves its bands from block 2 on.
RGB_POOLS = ((2, 2, 1), (2, 2, 1), (2, 2, 1))
HSI_POOLS = ((2, 2, 1), (2, 2, 2), (2, 2, 2))


@dataclass(frozen=True)
class MultimodalSpec:
    """Sizes of the network; see the module docstring for the shapes they give."""

    patch_size: int = 25
    rgb_bands: int = 3
    hsi_bands: int = 11
    rgb_filters: tuple[int, int, int] = (16, 32, 32)
    hsi_filters: tuple[int, int, int] = (16, 32, 64)
    fc_units: tuple[int, int] = (256, 128)
    dropout: float = 0.3
    num_classes: int = NUM_CLASSES
    seed: int = 0


def branch_layer_names(branch: str) -> list[str]:
    """Layer names of one branch, in order."""
    names = []
    for i in (1, 2, 3):
        names += [f"{branch}_conv{i}", f"{branch}_pool{i}", f"{branch}_bn{i}"]
    return [*names, f"{branch}_flatten", f"{branch}_dropout"]


MERGE_LAYERS = ["merge_concat", "merge_fc1", "merge_dropout", "merge_fc2", "merge_classifier"]


def blocks() -> dict[str, list[str]]:
    """Block name -> its layer names: the units a split scheme places (Fig 6.3(b))."""
    out: dict[str, list[str]] = {}
    for branch in ("rgb", "hsi"):
        for i in (1, 2, 3):
            out[f"{branch}_block{i}"] = [f"{branch}_conv{i}", f"{branch}_pool{i}", f"{branch}_bn{i}"]
        out[f"{branch}_head"] = [f"{branch}_flatten", f"{branch}_dropout"]
    out["merge"] = list(MERGE_LAYERS)
    return out


def layer_names() -> list[str]:
    return [name for layers in blocks().values() for name in layers]


def layer_output_shapes(spec: MultimodalSpec) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of every layer, from sizes alone (no TensorFlow): the basis of the
    split-boundary traffic estimate (:mod:`ddl_commodity.models.splits`)."""
    out: dict[str, tuple[int, ...]] = {}
    ends = {}
    for branch, bands, filters, pools in (("rgb", spec.rgb_bands, spec.rgb_filters, RGB_POOLS),
                                          ("hsi", spec.hsi_bands, spec.hsi_filters, HSI_POOLS)):
        shape = (spec.patch_size, spec.patch_size, bands)
        out[f"{branch}_input"] = (*shape, 1)
        for i, (f, pool) in enumerate(zip(filters, pools, strict=True), start=1):
            out[f"{branch}_conv{i}"] = (*shape, f)
            shape = tuple(d // p for d, p in zip(shape, pool, strict=True))
            out[f"{branch}_pool{i}"] = (*shape, f)
            out[f"{branch}_bn{i}"] = (*shape, f)
        flat = shape[0] * shape[1] * shape[2] * filters[-1]
        out[f"{branch}_flatten"] = out[f"{branch}_dropout"] = (flat,)
        ends[branch] = flat
    f1, f2 = spec.fc_units
    out["merge_concat"] = (ends["rgb"] + ends["hsi"],)
    out["merge_fc1"] = out["merge_dropout"] = (f1,)
    out["merge_fc2"] = (f2,)
    out["merge_classifier"] = (spec.num_classes,)
    return out


def layer_parameter_counts(spec: MultimodalSpec) -> dict[str, int]:
    """Trainable + non-trainable weights per layer (BatchNorm: gamma, beta, moving mean and variance)."""
    shapes = layer_output_shapes(spec)
    counts = dict.fromkeys(layer_names(), 0)
    for branch, _bands, filters in (("rgb", spec.rgb_bands, spec.rgb_filters), ("hsi", spec.hsi_bands,
                                                                               spec.hsi_filters)):
        c_in = 1
        for i, f in enumerate(filters, start=1):
            counts[f"{branch}_conv{i}"] = 27 * c_in * f + f
            counts[f"{branch}_bn{i}"] = 4 * f
            c_in = f
    counts["merge_fc1"] = shapes["merge_concat"][0] * spec.fc_units[0] + spec.fc_units[0]
    counts["merge_fc2"] = spec.fc_units[0] * spec.fc_units[1] + spec.fc_units[1]
    counts["merge_classifier"] = spec.fc_units[1] * spec.num_classes + spec.num_classes
    return counts


def block_graph(spec: MultimodalSpec) -> BlockGraph:
    """The network as data for split-boundary traffic: ``*_input`` are the patches, ``loss`` the loss."""
    edges = []
    for branch in ("rgb", "hsi"):
        names = [f"{branch}_input", *branch_layer_names(branch)]
        edges += list(itertools.pairwise(names))
        edges.append((names[-1], "merge_concat"))
    edges += list(itertools.pairwise([*MERGE_LAYERS, "loss"]))
    counts = layer_parameter_counts(spec)
    # BatchNorm: gamma and beta are trained, the moving statistics are written back too.
    weights = {name: (n // 2 if "_bn" in name else n, n) for name, n in counts.items()}
    tensors = {name: (2, 4) if "_bn" in name else (2, 2) for name, n in counts.items() if n}
    return BlockGraph(layer_names(), ["rgb_input", "hsi_input"], edges, layer_output_shapes(spec), weights,
                      tensors)
