"""The single-machine engine: the thesis's baselines ("sequential CNN", Fig 6.4's non-distributed curve).

The same :class:`~ddl_commodity.engines.training.Trainer` loop as the model-parallel client, in this
process, no Spark; one record per epoch in ``workers/single.jsonl``, like a worker's.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ddl_commodity.config import RunConfig
from ddl_commodity.engines.training import Trainer
from ddl_commodity.experiments.api import Dataset, Experiment
from ddl_commodity.runs import write_jsonl_atomic


def print_epoch(r: dict, epochs: int) -> None:
    """One progress line per finished epoch (reads well in CI logs too)."""
    val = f", val accuracy {r['val_accuracy']:.4f}" if r.get("val_accuracy") is not None else ""
    where = f"PS version {r['ps_version']}" if "ps_version" in r else f"{r['steps']} steps"
    print(f"  {r['worker']} epoch {r['epoch']}/{epochs}: loss {r['loss']:.4f}, accuracy {r['accuracy']:.4f}{val} "
          f"({r['seconds']:.1f} s, {where})", flush=True)


def train_single(experiment: Experiment, cfg: RunConfig, data: Dataset, run_dir: Path,
                 save_model: bool = True) -> dict:
    """Train in this process; write ``workers/single.jsonl`` (and ``model.keras`` if ``save_model``)."""
    model = experiment.build_model(cfg)
    trainer = Trainer(model, cfg.training, seed=cfg.seed)
    records: list[dict] = []

    def on_epoch(r) -> None:
        rec = {"worker": "single", **dataclasses.asdict(r), "time": time.time()}
        records.append(rec)
        print_epoch(rec, cfg.training.epochs)

    results = trainer.fit(data.inputs, data.labels, data.train_index, data.validation_index, on_epoch)
    write_jsonl_atomic(Path(run_dir) / "workers" / "single.jsonl", records)
    if save_model:
        model.save(Path(run_dir) / "model.keras")
    last = results[-1]
    return {"val_loss": last.val_loss, "val_accuracy": last.val_accuracy} if last.val_loss is not None else {}
