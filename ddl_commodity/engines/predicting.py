"""Scoring a data set with a run's final model, executor side (``ddl predict``): each task scores its pieces
and writes one Parquet file per piece; the model is loaded once per executor's Python worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddl_commodity.data.parquet import ROW, Column, Piece

#: The models and experiments this Python worker has loaded: Spark reuses the worker for later tasks.
_LOADED: dict[str, Any] = {}


@dataclass(frozen=True)
class ScoringJob:
    """What every task needs. Args: ``config`` the run's config as a dict; ``model_name`` the SparkFiles name of
    its ``model.keras``; ``inputs`` the input columns, in the model's order; ``out_dir`` where the part files go
    (a path every executor can write); ``batch_size`` rows per forward pass."""

    config: dict
    model_name: str
    inputs: tuple[Column, ...]
    out_dir: str
    batch_size: int = 256


def scorer(job: ScoringJob) -> Callable[[Iterator[Piece]], Iterator[tuple[str, int]]]:
    """The function a Spark task runs on its pieces: ``(part file, rows)`` for each piece it scored."""

    def score(pieces: Iterator[Piece]) -> Iterator[tuple[str, int]]:
        for piece in pieces:
            yield score_piece(job, piece)

    return score


def score_piece(job: ScoringJob, piece: Piece) -> tuple[str, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ddl_commodity.data.streaming import piece_rows
    from ddl_commodity.experiments.api import unflatten

    experiment = _experiment(job.config)
    model = _model(job.model_name)
    index, x, _ = piece_rows(piece, job.inputs, None)
    outputs = model.predict(unflatten(x, [c.shape for c in job.inputs]), batch_size=job.batch_size, verbose=0)
    columns = {ROW: index, **experiment.predictions(outputs)}
    path = Path(job.out_dir) / f"part-{piece.first_row:012d}.parquet"
    pq.write_table(pa.table(columns), path)
    return str(path), len(index)


def _experiment(config: dict) -> Any:
    """The run's experiment, validated once per Python worker rather than once per piece."""
    import json

    from ddl_commodity.experiments.registry import experiment_and_config

    key = "experiment:" + json.dumps(config, sort_keys=True, default=str)
    if key not in _LOADED:
        _LOADED[key], _ = experiment_and_config(config, "<run config>", check=False)
    return _LOADED[key]


def _model(name: str) -> Any:
    if name not in _LOADED:
        import keras
        from pyspark import SparkFiles

        _LOADED[name] = keras.saving.load_model(SparkFiles.get(name), compile=False)
    return _LOADED[name]
