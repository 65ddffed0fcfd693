"""The model-parallel engine, driver side (thesis 6.2.3): TFoS TensorFlow-input mode, 1 PS + M workers, the
model's blocks placed on workers by a split scheme, every weight on the PS.

The data file is shipped to every executor's disk (the thesis's "datasets stored locally in each worker");
the scheme's input node runs the training loop; the driver waits for it, then for TFoS's shutdown. The
summary adds what the thesis read from Ganglia: per node CPU, memory and network, per training step and
over the run, and the bytes the scheme implies from tensor shapes next to the bytes measured.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from ddl_commodity.config import RunConfig
from ddl_commodity.engines.single import print_epoch
from ddl_commodity.experiments.api import Dataset, Experiment, SourceData
from ddl_commodity.experiments.registry import view_of
from ddl_commodity.runtime.session import SparkSource, TfosSession

DEFAULT_MONITOR_INTERVAL_S = 1.0


def train(experiment: Experiment, cfg: RunConfig, data: Dataset | SourceData, run_dir: Path,
          progress: bool | None = None, spark: SparkSource | None = None) -> tuple[dict, dict]:
    """Run the cluster until the input node has trained every epoch; final metrics and summary sections.
    ``progress``: a live bar within epochs (``None``: only if stdout is a terminal); ``spark``: where the
    SparkContext comes from (:class:`~ddl_commodity.runtime.session.TfosSession`)."""
    from ddl_commodity.engines.model_parallel_node import main_fun
    from ddl_commodity.engines.progress import EpochBar
    from ddl_commodity.engines.training import samples_per_epoch

    scheme = experiment.scheme(cfg)
    client = scheme.input.replace(":", "-")

    def on_record(stream: str, r: dict) -> None:
        if stream.startswith("workers/"):
            print_epoch(r, cfg.training.epochs, view_of(experiment).validation_curve)

    if isinstance(data, SourceData):  # read where it lies: the input node streams it, nothing is shipped
        held_out = set(data.validation)
        source = {"data_pieces": tuple(p for i, p in enumerate(data.pieces) if i not in held_out),
                  "validation_pieces": tuple(data.validation_pieces), "validation_columns": (*data.inputs, data.label),
                  "input_shapes": tuple(data.input_shapes)}
        files: tuple[Path, ...] = ()
    else:
        source, files = {"data_file": data.path.name}, (data.path,)
    with TfosSession(cfg, run_dir, "model-parallel run", on_record=on_record, spark=spark) as session:
        args = session.node_args(
            layers=dict(scheme.layers), variables=scheme.variables, input_node=scheme.input,
            monitor_interval_s=cfg.monitor.interval_s if cfg.monitor else DEFAULT_MONITOR_INTERVAL_S, **source)
        session.start(main_fun, args, "tensorflow", files=files)
        per_epoch = samples_per_epoch(cfg.training, len(data.train_index))
        with EpochBar(session.collector, per_epoch, cfg.training.epochs, enabled=progress):
            while not session.collector.is_done(client):
                session.check_failed()
                time.sleep(0.5)
        session.collector.finish()  # the serving nodes return; TFoS then sees every worker task complete
        session.shutdown(cfg.cluster.failure_timeout_s + 120)
    return _save_final_model(run_dir), _sections(experiment, cfg, run_dir, scheme)


def _save_final_model(run_dir: Path) -> dict:
    """The input node sent its trained model's ``.keras`` file as a final checkpoint: keep it as the run's
    model (no TensorFlow needed here); the final metrics are the input node's last epoch's."""
    from ddl_commodity.ps.checkpoint import CHECKPOINT_FILE, load_checkpoint
    from ddl_commodity.runs import read_jsonl

    _, (model_file,) = load_checkpoint(run_dir / CHECKPOINT_FILE)
    (run_dir / "model.keras").write_bytes(model_file.tobytes())
    (run_dir / CHECKPOINT_FILE).unlink()
    with contextlib.suppress(OSError):
        (run_dir / CHECKPOINT_FILE).parent.rmdir()
    records = [r for p in sorted((run_dir / "workers").glob("*.jsonl")) for r in read_jsonl(p)]
    last = max(records, key=lambda r: r["epoch"]) if records else {}
    return {k: v for k, v in last.items() if k.startswith("val_")} or {"val_loss": None, "val_accuracy": None}


def _sections(experiment: Experiment, cfg: RunConfig, run_dir: Path, scheme) -> dict:
    """Per-node measurements over the steady epochs next to the shape-computed bytes per step."""
    from ddl_commodity.artifacts.curves import load_worker_curves
    from ddl_commodity.models.splits import boundary_traffic
    from ddl_commodity.monitor.metrics import compare_traffic, measured_per_step, node_rows

    records = [r for rs in load_worker_curves(run_dir).values() for r in rs]
    # The first epoch carries graph set-up and function registration: measure from the second on.
    steady = [r for r in records if r["epoch"] > 1] or records
    windows = [(r["train_start"], r["train_end"], r["steps"]) for r in steady]
    computed = boundary_traffic(scheme, experiment.block_graph(cfg), cfg.training.batch_size)
    measured = measured_per_step(node_rows(run_dir), windows)
    return {
        "scheme": {"name": scheme.name, "figure": scheme.figure, "layers": scheme.layers},
        "placement_check": placement_check(run_dir, scheme),
        "nodes": measured,
        "traffic_check": compare_traffic(measured, computed),
        "boundary_bytes_per_step": computed,
        "iowait_note": "iowait is machine-wide on a one-machine cluster (same value for every node)",
    }


def placement_check(run_dir: Path, scheme) -> dict:
    """Did each layer's ops (forward and gradient) run on the node the scheme gives it? From the devices the
    input node read off its compiled training step (``placement.jsonl``)."""
    from ddl_commodity.models.placement import device_of
    from ddl_commodity.runs import read_jsonl

    records = read_jsonl(run_dir / "placement.jsonl")
    if not records:
        return {"consistent": False, "problems": ["the input node reported no placement"], "layers": {}}
    devices = records[-1]["layers"]
    problems = [f"{layer}: ops on {devices.get(layer) or 'no device'}, scheme says {node}"
                for layer, node in sorted(scheme.layers.items())
                if not devices.get(layer) or set(devices[layer]) != {device_of(node)}]
    return {"consistent": not problems, "problems": problems, "layers": devices}
