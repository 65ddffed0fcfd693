"""``summary.json`` as a type: what every run's summary holds, so reports read it without knowing which
experiment or engine wrote it. Engine- and experiment-specific parts travel in :attr:`RunSummary.sections`
and are written as top-level keys."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass
class WorkerSummary:
    """The last epoch of one worker (or of ``single``), and where its epochs' time went on average: training,
    waiting at the PS (``sync``), and the rest (the next feed, validation); None where not recorded."""

    epochs: int
    final_loss: float
    final_accuracy: float | None  # None for a regression
    final_val_accuracy: float | None = None
    epoch_seconds_mean: float | None = None
    train_seconds_mean: float | None = None
    sync_seconds_mean: float | None = None

    @classmethod
    def of(cls, records: list[dict]) -> WorkerSummary:
        """From one worker's epoch records, in order."""
        def mean(key: str) -> float | None:
            values = [r[key] for r in records if r.get(key) is not None]
            return round(sum(values) / len(values), 3) if values else None

        last = records[-1]
        return cls(len(records), last["loss"], last["accuracy"], last.get("val_accuracy"), mean("seconds"),
                   mean("train_seconds"), mean("sync_seconds"))


@dataclass
class RunSummary:
    name: str
    experiment: str
    mode: str
    description: str
    wall_seconds: float
    data: str
    train_samples: int | None = None
    validation_samples: int | None = None
    workers: dict[str, WorkerSummary] = field(default_factory=dict)
    epochs_to_plateau: dict[str, dict[str, int | None]] = field(default_factory=dict)
    final: dict = field(default_factory=dict)
    curves: str | None = None
    sections: dict = field(default_factory=dict)
    #: Where the run's files are (not written into ``summary.json``: a run directory may be moved).
    run_dir: Path | None = None

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_WRITTEN}
        out["workers"] = {k: asdict(v) for k, v in self.workers.items()}
        return {**out, **self.sections}

    @classmethod
    def from_dict(cls, doc: dict, run_dir: Path | None = None) -> RunSummary:
        known = {f.name for f in fields(cls)} - _NOT_WRITTEN
        kwargs = {k: v for k, v in doc.items() if k in known}
        kwargs["workers"] = {k: WorkerSummary(**v) for k, v in doc.get("workers", {}).items()}
        return cls(**kwargs, sections={k: v for k, v in doc.items() if k not in known},
                   run_dir=Path(run_dir) if run_dir is not None else None)

    @classmethod
    def read(cls, run_dir: Path) -> RunSummary:
        return cls.from_dict(json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8")), run_dir)


_NOT_WRITTEN = {"sections", "run_dir"}
