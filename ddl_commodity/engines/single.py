"""The single-machine engine: the thesis's baselines ("sequential CNN", Fig 6.4's non-distributed curve).

The same :class:`~ddl_commodity.engines.training.Trainer` loop as the model-parallel client, in this
process, no Spark; one record per epoch in ``workers/single.jsonl``, like a worker's.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ddl_commodity.artifacts.tensorboard import RunBoard
from ddl_commodity.config import RunConfig
from ddl_commodity.engines.scoring import Objective
from ddl_commodity.engines.training import Trainer
from ddl_commodity.experiments.api import Dataset, Experiment
from ddl_commodity.experiments.registry import view_of
from ddl_commodity.runs import write_jsonl_atomic


def print_epoch(r: dict, epochs: int, validation: tuple[str, str] = ("val_accuracy", ""), note: str = "") -> None:
    """One progress line per finished epoch (reads well in CI logs too); ``validation`` is the experiment's
    :attr:`~ddl_commodity.experiments.view.ExperimentView.validation_curve`, shown after the validation accuracy
    (after the validation loss for a model that does not classify); ``note`` ends the line's parenthesis."""
    shown = [("loss", "loss"), ("accuracy", "accuracy")]
    shown.append(("val_accuracy", "val accuracy") if r.get("val_accuracy") is not None else ("val_loss", "val loss"))
    if validation[0] not in ("val_accuracy", "val_loss"):
        shown.append(validation)
    text = ", ".join(f"{label} {r[key]:.4f}" for key, label in shown if r.get(key) is not None)
    where = f"PS version {r['ps_version']}" if "ps_version" in r else f"{r['steps']} steps"
    from tqdm import tqdm

    # tqdm.write: printed above a live progress bar (a plain print on a pipe)
    tqdm.write(f"  {r['worker']} epoch {r['epoch']}/{epochs}: {text} ({r['seconds']:.1f} s, {where}{note})",
               file=sys.stdout)
    sys.stdout.flush()


def train_single(experiment: Experiment, cfg: RunConfig, data: Dataset, run_dir: Path,
                 save_model: bool = True, progress: bool | None = False) -> dict:
    """Train in this process; write ``workers/single.jsonl`` (and ``model.keras`` if ``save_model``).
    ``progress``: a bar within each epoch (``None``: only on a terminal)."""
    model = experiment.build_model(cfg)
    trainer = Trainer(model, cfg.training, seed=cfg.seed, objective=Objective.of(experiment, cfg))
    validation = view_of(experiment).validation_curve
    records: list[dict] = []

    def on_epoch(r) -> None:
        rec = r.record("single")
        records.append(rec)
        board.add("workers/single", rec)
        print_epoch(rec, cfg.training.epochs, validation)

    with RunBoard(run_dir) as board:
        results = trainer.fit(data.inputs, data.labels, data.train_index, data.validation_index, on_epoch, progress)
    write_jsonl_atomic(Path(run_dir) / "workers" / "single.jsonl", records)
    if save_model:
        model.save(Path(run_dir) / "model.keras")
    return {k: v for k, v in results[-1].record("single").items() if k.startswith("val_") and v is not None}
