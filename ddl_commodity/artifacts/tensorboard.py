"""TensorBoard event files of a run, so ``tensorboard --logdir runs/`` overlays runs.

``runs/<id>/tensorboard/<node>/`` holds one event file per writer: every worker (and ``single``) logs its
per-epoch scalars at step = epoch (``train/loss``, ``validation/accuracy``, ``global_validation/dz_median`` ...),
and ``ps`` logs every update it applied at step = the PS version it produced (``ps/tau``, ``ps/lambda``,
``ps/update_norm``, ``ps/wait_seconds``). The files are written while the run goes (the driver receives every
record), and rebuilt from the run's JSON lines by ``ddl report`` when they are missing.

Written with TensorBoard's own record framing and protos into plain local files, without TensorFlow:
TensorBoard's ``EventFileWriter`` opens its file through ``tf.io.gfile``, which imports TensorFlow whenever
it is installed (2.8 CPU-s and ~400 MB in a driver that otherwise runs none, see
:mod:`ddl_commodity.runtime.tfos_import`).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

from ddl_commodity.runs import read_jsonl

BOARD_DIR = "tensorboard"
_SKIPPED = {"epoch", "time", "train_start", "train_end", "base_version", "ps_version", "shard", "feed_epoch",
            "index_count", "worker", "applied_version", "s"}


def scalars(stream: str, record: dict) -> tuple[str, int, dict[str, float]] | None:
    """``(writer, step, {tag: value})`` for one record of ``stream``, or ``None`` if it has no scalars."""
    numbers = {k: float(v) for k, v in record.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _SKIPPED}
    if stream.startswith("workers/") and "epoch" in record:
        return stream.removeprefix("workers/"), int(record["epoch"]), {_worker_tag(k): v for k, v in numbers.items()}
    if stream == "ps" and record.get("event", "applied") == "applied" and "applied_version" in record:
        return "ps", int(record["applied_version"]), {f"ps/{k}": v for k, v in numbers.items()}
    return None


def _worker_tag(key: str) -> str:
    for prefix, group in (("global_val_", "global_validation/"), ("val_", "validation/")):
        if key.startswith(prefix):
            return group + key.removeprefix(prefix)
    return ("train/" if key in ("loss", "accuracy") else "epoch/") + key


class EventFile:
    """One TensorBoard event file in ``directory``: TFRecord-framed ``Event`` protos, the first one naming
    the file version, as TensorBoard's ``EventFileWriter`` writes them; each :meth:`add` is flushed."""

    def __init__(self, directory: Path) -> None:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        directory.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self._records = RecordWriter(open(directory / name, "wb"))  # noqa: SIM115 - closed by close()
        self.add([event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")])

    def add(self, events: list) -> None:
        for event in events:
            self._records.write(event.SerializeToString())
        self._records.flush()

    def close(self) -> None:
        self._records.close()


class RunBoard:
    """One :class:`EventFile` per node under ``<run_dir>/tensorboard``; thread-safe (the collector's
    gRPC threads call :meth:`add`). Use as a context manager, or call :meth:`close`."""

    def __init__(self, run_dir: Path) -> None:
        self.root = Path(run_dir) / BOARD_DIR
        self._writers: dict[str, EventFile] = {}
        self._lock = threading.Lock()

    def add(self, stream: str, record: dict) -> None:
        found = scalars(stream, record)
        if found is None:
            return
        writer, step, values = found
        wall_time = float(record.get("time", 0.0)) or None
        with self._lock:
            if writer not in self._writers:
                self._writers[writer] = EventFile(self.root / writer)
            self._writers[writer].add([_scalar_event(tag, value, step, wall_time) for tag, value in values.items()])

    def close(self) -> None:
        with self._lock:
            for w in self._writers.values():
                w.close()
            self._writers.clear()

    def __enter__(self) -> RunBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scalar_event(tag: str, value: float, step: int, wall_time: float | None):
    from tensorboard.compat.proto import event_pb2, summary_pb2

    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
    return event_pb2.Event(wall_time=wall_time or time.time(), step=step, summary=summary)


def rebuild_board(run_dir: Path) -> Path:
    """Write ``<run_dir>/tensorboard`` afresh from ``workers/*.jsonl`` and ``ps.jsonl``."""
    run_dir = Path(run_dir)
    shutil.rmtree(run_dir / BOARD_DIR, ignore_errors=True)
    with RunBoard(run_dir) as board:
        for path in sorted((run_dir / "workers").glob("*.jsonl")):
            for record in read_jsonl(path):
                board.add(f"workers/{path.stem}", record)
        for record in read_jsonl(run_dir / "ps.jsonl"):
            board.add("ps", record)
    return run_dir / BOARD_DIR
