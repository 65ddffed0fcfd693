"""Run directories: ``runs/<run-id>/`` with everything one run produced, written so nothing is half-done.

Layout::

    runs/<run-id>/
      config.yaml          the resolved configuration (every default filled in)
      status.json          {"state": "running" | "failed" | "succeeded", ...}; updated atomically
      workers/<w>.jsonl    per-epoch records of each worker (and ``single.jsonl`` for the baseline)
      ps.jsonl             every update the parameter server applied or refused
      heartbeats.json      per node: heartbeats, the longest gap between two, the slowest call (every run,
                           failed ones too: how close each node came to ``heartbeat_timeout_s``)
      curves.png           accuracy / loss per epoch, one line per worker (Figs 5.3, 5.6)
      model.keras          the final global model
      summary.json         written last, and only when the run succeeded

A directory without ``summary.json`` never claims to be a finished run.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ddl_commodity.errors import UserInputError


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, doc: Any) -> Path:
    return write_bytes_atomic(path, (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode())


def write_yaml_atomic(path: Path, doc: Any) -> Path:
    return write_bytes_atomic(path, yaml.safe_dump(doc, sort_keys=False).encode())


CLUSTER_INFO_FILE = "cluster_info.json"


def record_cluster_info(run_dir: Path, cluster_info: list[dict]) -> Path:
    """Write which executor ran which TF task (``TFCluster.cluster_info``) to ``run_dir/cluster_info.json``.

    One entry per TF node: ``job_name``, ``task_index``, ``host``, ``port``, ``executor_id``. Per-node
    reports (e.g. the netns cluster's traffic attribution) read roles from here, never from logs.
    """
    keys = ("job_name", "task_index", "host", "port", "executor_id")
    nodes = [{k: n.get(k) for k in keys} for n in cluster_info]
    return write_json_atomic(Path(run_dir) / CLUSTER_INFO_FILE, {"nodes": nodes})


def read_cluster_info(run_dir: Path) -> list[dict]:
    """Entries written by :func:`record_cluster_info`; ``[]`` if the run never reserved its cluster."""
    path = Path(run_dir) / CLUSTER_INFO_FILE
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8"))["nodes"])


def new_run_id(name: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{secrets.token_hex(2)}"


def create_run_dir(runs_dir: Path, name: str, run_id: str | None = None) -> Path:
    """Make ``runs_dir/<run-id>/`` (fails if it exists) and mark it running."""
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        run_dir = runs_dir / (run_id or new_run_id(name))
        run_dir.mkdir()
    except FileExistsError:
        raise UserInputError(f"{run_dir}: run directory already exists") from None
    except OSError as err:
        raise UserInputError(f"{runs_dir}: cannot create a run directory there: {err.strerror}") from None
    set_status(run_dir, "running")
    return run_dir


def set_status(run_dir: Path, state: str, **extra: Any) -> None:
    write_json_atomic(Path(run_dir) / "status.json", {"state": state, "time": time.time(), **extra})


def read_status(run_dir: Path) -> dict:
    """The run's ``status.json`` (``{}`` when there is none or it cannot be read)."""
    try:
        return json.loads((Path(run_dir) / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def fail_unless_final(run_dir: Path, error: str, overwrite_failed: bool = False) -> None:
    """Mark the run failed with ``error`` unless its status already says how it ended: a run whose summary
    was written stays ``succeeded``, and a failure already recorded (with its node failures) is kept unless
    ``overwrite_failed``."""
    state = read_status(run_dir).get("state")
    if state == "succeeded" or (state == "failed" and not overwrite_failed):
        return
    set_status(run_dir, "failed", error=error)


def record_outcome(run_dir: Path, produce_summary: Callable[[], dict]) -> dict:
    """Call ``produce_summary``; write its result to ``summary.json`` and mark the run succeeded.

    Whatever ends it otherwise (an error, Ctrl-C, SIGTERM) marks the run failed with that reason first.
    """
    try:
        summary = produce_summary()
    except BaseException as err:
        failures = {"failures": [f.to_dict() for f in err.failures]} if getattr(err, "failures", None) else {}
        set_status(run_dir, "failed", error=f"{type(err).__name__}: {err}", **failures)
        raise
    write_json_atomic(Path(run_dir) / "summary.json", summary)
    set_status(run_dir, "succeeded")
    return summary


def read_jsonl(path: Path) -> list[dict]:
    """Records of a ``.jsonl`` file; a torn last line (a crash mid-write) is ignored."""
    out = []
    if not Path(path).is_file():
        return out
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def write_jsonl_atomic(path: Path, records: list[dict]) -> Path:
    return write_bytes_atomic(path, "".join(json.dumps(r) + "\n" for r in records).encode())
