"""The redshift experiment (thesis chapter 5): simulated galaxy spectra, the 1D CNN of Fig 5.1, trained on
one machine or data parallel with the staleness-weighted PS (``experiment: redshift``). How its runs are shown
(the redshift errors against the trivial estimator, ``ddl reproduce`` sizes) is :class:`RedshiftView`.

Example (``configs/quickstart.yaml``)::

    experiment: redshift
    name: quickstart
    data: {samples: 2000}
    training: {mode: data_parallel, workers: 2, epochs: 4, data_distribution: disjoint}
    ps: {s: 2, staleness: inverse}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from ddl_commodity.config import DataSettingsBase, RunConfig, Strict, TrainingSettingsBase
from ddl_commodity.data.parquet import Column
from ddl_commodity.data.redshift import NUM_BANDS, NUM_CLASSES
from ddl_commodity.experiments.api import Dataset, Experiment, SourceData
from ddl_commodity.experiments.view import ExperimentView


class SimulatorSettings(Strict):
    """Spectrum simulator knobs (thesis 5.1); passed to ``data.redshift.SimulatorConfig``."""

    z_distribution: Literal["uniform", "beta"] = Field(
        "uniform", description="how redshifts spread over [1, 1.8): `uniform`, or `beta` (more low-z galaxies)")
    magnitude_mean: float = Field(21.0, description="mean apparent magnitude of the galaxies, within 18-24 "
                                  "(higher: fainter galaxies, noisier spectra)")
    magnitude_std: float = Field(1.0, ge=0.0, description="standard deviation of the apparent magnitude")
    noise: bool = Field(True, description="add sky-dominated Gaussian noise (the thesis's noisy data, 5.3)")


class RedshiftDataSettings(DataSettingsBase):
    """Where the spectra come from.

    ``path`` names an existing HDF5 file written by ``ddl data redshift``; when it is omitted the run
    generates ``samples`` spectra with ``seed`` (and caches them under ``cache_dir``).
    """

    path: Path | None = Field(None, description="an HDF5 file of spectra written by `ddl data redshift`; null: "
                              "simulate `samples` spectra with the run's seed")
    samples: int = Field(2000, ge=10, le=10_000_000, description="spectra simulated when `path` is null (thesis "
                         "5.3: 5K and 15K)")
    simulator: SimulatorSettings = Field(SimulatorSettings(), description="the spectrum simulator's settings "
                                         "(thesis 5.1)")


class RedshiftModelSettings(Strict):
    """The 1D CNN of thesis 5.2.1 / Fig 5.1: Conv1D(k) -> ReLU -> Conv1D(k) -> ReLU -> Dropout -> Flatten -> Dense.

    The thesis gives the kernel length (8) but not the filter counts or the dropout rate. The defaults (8 and 8
    filters, dropout 0.2) keep the dense layer at ~11.4M weights (1786 x 8 x 800), a size a 2 GB worker trains
    comfortably and that makes one PS update ~46 MB, the order of traffic the thesis discusses.
    """

    filters: tuple[int, int] = Field((8, 8), description="filter counts of the two Conv1D layers (Fig 5.1; not "
                                     "given by the thesis)")
    kernel_size: int = Field(8, ge=1, le=256, description="kernel length of both Conv1D layers (Fig 5.1: 8)")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="dropout rate before the dense layer (Fig 5.1; not "
                           "given by the thesis)")

    @field_validator("filters")
    @classmethod
    def _positive_filters(cls, v: tuple[int, int]) -> tuple[int, int]:
        if any(f < 1 or f > 1024 for f in v):
            raise ValueError("filter counts must be in 1..1024")
        return v


class RedshiftTrainingSettings(TrainingSettingsBase):
    """``data_parallel`` is chapter 5's "distributed" CNN; ``single`` is its "sequential CNN"."""

    mode: Literal["data_parallel", "single"] = Field(
        "data_parallel", description="`data_parallel`: chapter 5's distributed CNN (Figs 5.3-5.6); `single`: its "
        "sequential CNN")


class RedshiftConfig(RunConfig):
    """A whole chapter 5 experiment."""

    experiment: Literal["redshift"] = Field("redshift", description="this experiment: redshift estimation from "
                                            "spectra (thesis chapter 5)")
    data: RedshiftDataSettings = Field(RedshiftDataSettings(), description="where the spectra come from (thesis "
                                       "5.1)")
    model: RedshiftModelSettings = Field(RedshiftModelSettings(), description="the 1D CNN's sizes (thesis 5.2.1, "
                                         "Fig 5.1)")
    training: RedshiftTrainingSettings = Field(RedshiftTrainingSettings(), description="how it is trained: one "
                                               "machine or data parallel (thesis 5.2.2)")


class RedshiftView(ExperimentView):
    """The redshift errors astronomers read, beside the trivial estimator's; ``ddl reproduce``'s sizes."""

    validation_curve = ("val_dz_median", "median |dz|/(1+z)")

    def console_lines(self, summary: dict) -> list[str]:
        final, trivial = summary.get("final", {}), summary.get("trivial_estimator")
        if final.get("val_dz_median") is None or not trivial:
            return []
        ratio = trivial["dz_median"] / max(final["val_dz_median"], 1e-9)
        # 1.4x must not print as "1x"; within 10% of the trivial error is no gain worth a verdict.
        verdict = (f"{ratio:.{0 if ratio >= 10 else 1}f}x smaller than always guessing the median" if ratio >= 1.1
                   else "NOT clearly better than always guessing the median")
        return [f"  held-out |dz|/(1+z): median {final['val_dz_median']:.4f}, NMAD {final['val_dz_nmad']:.4f}, "
                f"outliers (>0.15) {final['val_outlier_fraction']:.1%}, within 1 class {final['val_within_1']:.1%}",
                f"  trivial estimator, always z = {trivial['z']:.3f} (the training median): median "
                f"{trivial['dz_median']:.4f}, NMAD {trivial['dz_nmad']:.4f}, "
                f"outliers {trivial['outlier_fraction']:.1%}",
                f"  -> the final model's median error is {verdict}"]

    def report_lines(self, summary: dict) -> list[str]:
        """The final model's redshift errors, by both point estimates, against the trivial estimator."""
        final, trivial = summary.get("final", {}), summary.get("trivial_estimator")
        if final.get("val_dz_median") is None or not trivial:
            return []

        def row(name: str, m: dict, suffix: str = "", within: bool = True) -> str:
            cells = [m[f"dz_median{suffix}"], m[f"dz_nmad{suffix}"], m[f"outlier_fraction{suffix}"]]
            tail = [m["within_1"], m["within_5"]] if within else ["-", "-"]
            return f"| {name} | " + " | ".join(f"{v:.4f}" if isinstance(v, float) else v for v in cells + tail) + " |"

        scores = {k.removeprefix("val_"): v for k, v in final.items() if k.startswith("val_")}
        return ["", "## Redshift errors of the final model (held-out)", "",
                "The error is |dz|/(1+z), as photometric-redshift work reads it; outliers: |dz|/(1+z) > 0.15; "
                "within 1 / 5: the predicted class at most 1 / 5 bins (0.001 in z each) from the true one.", "",
                "| estimator | median | NMAD | outlier fraction | within 1 | within 5 |", "|---|---|---|---|---|---|",
                row("final model, most probable class", scores),
                row("final model, softmax-expected z", scores, "_expected", within=False),
                row(f"trivial: always z = {trivial['z']:.3f} (training median)", trivial, within=False)]

    def at_scale(self, raw: dict, scale: str) -> dict:
        data, model, training = (raw.setdefault(k, {}) for k in ("data", "model", "training"))
        if scale == "small":
            # 1,000 spectra at batch 64 leave a disjoint-shard worker 5 steps per epoch, too few for a curve to
            # plateau within 8 epochs; 2,000 at batch 32 give it ~19, enough for Tables 5.1/5.2 to measure.
            data["samples"], model["filters"] = 2000, [4, 4]
            training.update(epochs=16, batch_size=32)
        elif scale == "smoke":  # every code path, nothing worth reading
            data["samples"], model["filters"], model["dropout"] = 400, [2, 2], 0.0
            training.update(epochs=3, batch_size=16)
        return raw  # thesis: configs/thesis/ holds the thesis's sizes already (5K spectra, 20 epochs)


class RedshiftExperiment(Experiment):
    name = "redshift"
    config_class = RedshiftConfig
    modes = ("single", "data_parallel")
    view = RedshiftView

    def data_file(self, cfg: RedshiftConfig, progress: bool | None = None) -> Path:
        """``data.path``, or the cached simulation for (samples, seed), simulated first if missing."""
        from ddl_commodity.data.redshift import GENERATOR_VERSION, SimulatorConfig, write_redshift_h5

        if cfg.data.path is not None:
            return Path(cfg.data.path)
        path = Path(cfg.data.cache_dir) / f"redshift-n{cfg.data.samples}-s{cfg.seed}-v{GENERATOR_VERSION}.h5"
        if not path.is_file():
            s = cfg.data.simulator
            sim = SimulatorConfig(z_distribution=s.z_distribution, magnitude_mean=s.magnitude_mean,
                                  magnitude_std=s.magnitude_std, noise=s.noise)
            write_redshift_h5(path, cfg.data.samples, cfg.seed, sim, progress=progress)
        return path

    def load(self, cfg: RedshiftConfig, path: Path) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        from ddl_commodity.data.redshift import load_redshift_h5

        data = load_redshift_h5(path)
        return (data.spectra,), data.label

    def build_model(self, cfg: RedshiftConfig):
        from ddl_commodity.models.redshift_cnn import build_redshift_cnn

        m = cfg.model
        return build_redshift_cnn(m.filters, m.kernel_size, m.dropout, seed=cfg.seed)

    def describe(self, cfg: RedshiftConfig) -> str:
        t = cfg.training
        if t.engine == "single":
            return "single machine (sequential CNN)"
        return f"{t.workers} workers, {t.data_distribution} data, s={cfg.ps.s}, lambda={cfg.ps.staleness}"

    def validation_metrics(self, probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """The redshift errors astronomers read (:mod:`ddl_commodity.data.redshift_metrics`)."""
        from ddl_commodity.data.redshift_metrics import redshift_metrics

        return redshift_metrics(probs, labels)

    def predictions(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        """The most probable class, its probability, and the redshift it stands for (its bin's centre)."""
        from ddl_commodity.data.redshift_metrics import class_centres

        out = super().predictions(outputs)
        out["z"] = class_centres(outputs.shape[1])[out["class"]].astype(np.float32)
        return out

    def columns(self, cfg: RedshiftConfig) -> tuple[tuple[Column, ...], Column]:
        """A data set of ``ddl data redshift`` (Parquet, or HDF5 files, whose dataset is ``spectra``): the
        spectrum in, the class out."""
        spectrum = Column("spectrum", (NUM_BANDS,), "float32", aliases=("spectra",))
        return (spectrum,), Column("label", (), "int32", (0, NUM_CLASSES))

    def summary_sections(self, cfg: RedshiftConfig, run_dir: Path, dataset: Dataset | SourceData) -> dict:
        """``trivial_estimator``: always the training set's median z, scored on the validation rows. For a data
        set the executors read, from class counts: the label column streamed one row group at a time."""
        from ddl_commodity.data.redshift_metrics import trivial_metrics

        if not len(dataset.validation_index):
            return {}
        if isinstance(dataset, SourceData):
            return {"trivial_estimator": trivial_from_counts(*label_counts(dataset))}
        return {"trivial_estimator": trivial_metrics(dataset.labels[dataset.train_index],
                                                     dataset.labels[dataset.validation_index])}


def label_counts(data: SourceData) -> tuple[np.ndarray, np.ndarray]:
    """Rows per class ``(NUM_CLASSES,)`` of the training and of the validation pieces, reading only the label
    column, one row group at a time: the driver holds counts, never the rows."""
    from ddl_commodity.data.parquet import read_piece

    counts = np.zeros((2, NUM_CLASSES), np.int64)
    held_out = set(data.validation)
    for i, piece in enumerate(data.pieces):
        labels = read_piece(piece, [data.label])[data.label.name]
        counts[int(i in held_out)] += np.bincount(labels, minlength=NUM_CLASSES)
    return counts[0], counts[1]


def trivial_from_counts(train: np.ndarray, validation: np.ndarray) -> dict:
    """:func:`~ddl_commodity.data.redshift_metrics.trivial_metrics` from class counts ``(C,)`` (training and
    validation rows per class) instead of the labels: the same numbers, from C counts instead of N labels."""
    from ddl_commodity.data.redshift_metrics import NMAD_SCALE, OUTLIER_DZ, class_centres

    centres = class_centres(len(train))
    z = _median_of_counts(centres, train)
    dz = (z - centres) / (1.0 + centres)
    middle = _median_of_counts(dz, validation)
    return {"z": z, "dz_median": _median_of_counts(np.abs(dz), validation),
            "dz_nmad": NMAD_SCALE * _median_of_counts(np.abs(dz - middle), validation),
            "outlier_fraction": float(validation[np.abs(dz) > OUTLIER_DZ].sum() / validation.sum())}


def _median_of_counts(values: np.ndarray, counts: np.ndarray) -> float:
    """``np.median`` of ``values[k]`` repeated ``counts[k]`` times (the mean of the two middle ones for an even
    total), without repeating them."""
    order = np.argsort(values, kind="stable")
    ends = np.cumsum(counts[order])
    n = int(ends[-1])
    low, high = (values[order][np.searchsorted(ends, k, side="right")] for k in ((n - 1) // 2, n // 2))
    return float((low + high) / 2)
