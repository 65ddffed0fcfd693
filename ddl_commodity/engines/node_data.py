"""The data a TF node reads for itself: validation rows, and a model-parallel input node's training batches
streamed from a data set's pieces (:mod:`ddl_commodity.data.streaming`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ddl_commodity.experiments.api import unflatten
from ddl_commodity.runtime.node import NodeArgs


def validation_rows(args: NodeArgs, dtype: type[np.number] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """The validation rows as the model's inputs and their labels (cast to ``dtype`` when given): from the file
    the driver shipped, or read by this node from the data set's validation pieces."""
    shapes = [tuple(s) for s in args.input_shapes]
    if args.validation_pieces:
        from ddl_commodity.data.streaming import piece_rows

        *inputs, label = args.validation_columns
        parts = [piece_rows(p, inputs, label) for p in args.validation_pieces]
        x, y = np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
    else:
        from pyspark import SparkFiles

        validation = np.load(SparkFiles.get(args.validation_file))
        x, y = validation["x"], validation["y"]
    return unflatten(x, shapes), y if dtype is None else y.astype(dtype)


def streamed_batches(args: NodeArgs, epoch: int, batch_size: int, seed: int,
                     dtype: type[np.number]) -> Iterator[tuple[tuple[np.ndarray, ...], np.ndarray]]:
    """Epoch ``epoch``'s (1-based) training batches of ``(inputs, labels)``, read piece by piece from
    ``args.data_pieces`` in a seeded order (the shuffle of :func:`~ddl_commodity.data.streaming.stream_bundles`)."""
    from ddl_commodity.data.streaming import stream_bundles

    *inputs, label = args.validation_columns
    shapes = [tuple(s) for s in args.input_shapes]
    for bundle in stream_bundles(args.data_pieces, inputs, label, range(epoch - 1, epoch), 0, batch_size, seed):
        yield tuple(unflatten(bundle.x, shapes)), bundle.y.astype(dtype)
