"""The land-cover experiment (thesis chapter 6): Houston (GRSS DFC 2018) or synthetic scenes cut into 25x25
multimodal patches, the two-branch 3D CNN of Fig 6.3(a), trained on one machine, model parallel with a split
scheme (Figs 6.3(b)-6.18) or data parallel for 6.3.5's comparison (``experiment: landcover``). How
``ddl reproduce`` sizes its runs is :class:`LandcoverView`.

Example (``configs/landcover-quick.yaml``)::

    experiment: landcover
    name: landcover-quick
    data: {synthetic_scale: 0.1, patches_per_class: 40}
    training: {mode: model_parallel, split: default, epochs: 2, batch_size: 50}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from ddl_commodity.config import (
    DataSettingsBase,
    MonitorSettings,
    ParameterServerSettings,
    RunConfig,
    Strict,
    TrainingSettingsBase,
)
from ddl_commodity.data.houston import NUM_CLASSES
from ddl_commodity.data.parquet import Column
from ddl_commodity.data.patches import DEFAULT_HSI_BANDS
from ddl_commodity.experiments.api import Experiment
from ddl_commodity.experiments.view import ExperimentView
from ddl_commodity.models.placement import BlockGraph, Placement

#: ``ddl reproduce --scale thesis`` measures every land-cover run over at least this many training steps after
#: its first epoch (which carries graph set-up): the steady-state window its figures are read over.
STEADY_STEPS = 150


def steady_state_epochs(data: dict, training: dict, steps: int) -> dict:
    """``epochs`` and ``steps_per_epoch`` giving at least ``steps`` steps after the first epoch, each epoch
    capped at ``steps`` (batch 10 on 8K patches would otherwise run 720 steps per epoch). A data-parallel
    worker trains on its whole shard every epoch (Spark feeds it; no cap), all of it with same data."""
    rows = data.get("patches_per_class", 400) * NUM_CLASSES * (1 - data.get("validation_fraction", 0.1))
    parallel = training.get("mode") == "data_parallel"
    if parallel and training.get("data_distribution", "disjoint") == "disjoint":
        rows /= training.get("workers", 3)
    full = max(1, int(rows // training.get("batch_size", 50)))
    per_epoch = full if parallel else min(steps, full)
    return {"epochs": 1 + -(-steps // per_epoch), **({} if parallel else {"steps_per_epoch": per_epoch})}


class HoustonDataSettings(DataSettingsBase):
    """Where the patches come from.

    ``patches``: an existing patch file (``ddl data houston --patches``). Otherwise patches are cut from
    ``scene`` (a directory with the contest's rasters) or, when ``scene`` is omitted, from a synthetic scene of
    ``synthetic_scale`` generated with the run's seed; both are cached under ``cache_dir``.
    """

    scene: Path | None = Field(None, description="a directory with the GRSS DFC 2018 Houston rasters (thesis "
                               "6.1); null: a synthetic scene of the same layout")
    patches: Path | None = Field(None, description="an existing patch file (`ddl data houston --patches`); null: "
                                 "cut patches from the scene")
    synthetic_scale: float = Field(0.1, gt=0.0, le=1.0, description="the synthetic scene's extent as a share of "
                                   "the contest scene's (1.0: 601 x 2384 HSI pixels)")
    patches_per_class: int = Field(400, ge=1, le=100_000, description="patches drawn per class 1..20 (thesis "
                                   "6.2.1: 400, 8,000 in all)")
    patch_size: int = Field(25, ge=3, le=101, description="side of a patch in ground-truth pixels, odd (thesis "
                            "6.2.1: 25)")
    hsi_bands: tuple[int, ...] = Field(DEFAULT_HSI_BANDS, description="0-based indices of the HSI bands kept, of "
                                       "50 (thesis 6.2.2: 11, unnamed; default: evenly spaced)")

    @field_validator("patch_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd (a patch is centred on its labelled pixel)")
        return v

    @field_validator("hsi_bands")
    @classmethod
    def _bands(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or len(set(v)) != len(v) or min(v) < 0 or max(v) > 49:
            raise ValueError("must be distinct band indices in 0..49")
        return v


class MultimodalModelSettings(Strict):
    """Sizes of the Fig 6.3(a) network (see ``models.multimodal_cnn``; the thesis does not give them)."""

    rgb_filters: tuple[int, int, int] = Field((16, 32, 32), description="filter counts of the RGB branch's three "
                                              "Conv3D blocks (Fig 6.3(a))")
    hsi_filters: tuple[int, int, int] = Field((16, 32, 64), description="filter counts of the HSI branch's three "
                                              "Conv3D blocks (Fig 6.3(a))")
    fc_units: tuple[int, int] = Field((256, 128), description="units of the two fully connected layers after the "
                                      "fusion (Fig 6.3(a))")
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="dropout rate after each branch and between the fully "
                           "connected layers")

    @field_validator("rgb_filters", "hsi_filters", "fc_units")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(f < 1 or f > 4096 for f in v):
            raise ValueError("sizes must be in 1..4096")
        return v


class LandcoverTrainingSettings(TrainingSettingsBase):
    """``model_parallel`` (default), ``single`` (Fig 6.4's non-distributed curve) or ``data_parallel`` (6.3.5)."""

    mode: Literal["model_parallel", "single", "data_parallel"] = Field(
        "model_parallel", description="`model_parallel`: a split scheme (Figs 6.3(b)-6.18); `single`: Fig 6.4's "
        "non-distributed curve; `data_parallel`: 6.3.5's comparison")
    workers: int = Field(3, ge=1, le=16, description="M, the TF worker tasks besides the PS task (the thesis's "
                         "schemes use 3, Fig 6.3(b))")
    epochs: int = Field(10, ge=1, le=10_000, description="passes over the training patches (Fig 6.4: 10)")
    batch_size: int = Field(50, ge=1, le=8192, description="patches per training step (Fig 6.5 compares 10, 50 "
                            "and 200)")


class LandcoverConfig(RunConfig):
    experiment: Literal["landcover"] = Field("landcover", description="this experiment: land-cover "
                                             "classification of multimodal patches (thesis chapter 6)")
    name: str = Field("landcover", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="the run's name: it "
                      "starts the run directory's name and names the Spark application")
    data: HoustonDataSettings = Field(HoustonDataSettings(), description="where the patches come from (thesis "
                                      "6.1, 6.2.1)")
    model: MultimodalModelSettings = Field(MultimodalModelSettings(), description="the multimodal 3D CNN's sizes "
                                           "(thesis 6.2.2, Fig 6.3(a))")
    training: LandcoverTrainingSettings = Field(LandcoverTrainingSettings(), description="how it is trained: "
                                                "model parallel, one machine or data parallel")
    monitor: MonitorSettings | None = Field(MonitorSettings(), description="per-node sampling, on by default: the "
                                            "Ganglia figures of chapter 6 (Figs 6.5-6.28); null: off")
    ps: ParameterServerSettings = Field(ParameterServerSettings(s=2), description="the PS of `data_parallel` runs "
                                        "(6.3.5); model-parallel runs keep every weight on the PS task")


def model_spec(cfg: LandcoverConfig):
    from ddl_commodity.models.multimodal_layout import MultimodalSpec

    m = cfg.model
    return MultimodalSpec(patch_size=cfg.data.patch_size, hsi_bands=len(cfg.data.hsi_bands),
                          rgb_filters=m.rgb_filters, hsi_filters=m.hsi_filters, fc_units=m.fc_units,
                          dropout=m.dropout, seed=cfg.seed)


class LandcoverView(ExperimentView):
    """The generic curves and lines; ``ddl reproduce``'s sizes of the chapter 6 runs."""

    def at_scale(self, raw: dict, scale: str) -> dict:
        data, t = raw.setdefault("data", {}), raw.setdefault("training", {})
        if scale == "small":
            data.update(synthetic_scale=0.1, patches_per_class=min(40, data.get("patches_per_class", 400)))
            t.update(epochs=min(t.get("epochs", 10), 3), steps_per_epoch=20)
        elif scale == "smoke":  # every code path, nothing worth reading
            # Large enough for what the suite checks on these runs (tests/integration/test_reproduce_smoke.py:
            # the loss falls; busy and idle nodes and the bytes per step told apart); one batch size, so that
            # Fig 6.5's three runs are one.
            data.update(synthetic_scale=0.05, patches_per_class=60)
            raw["model"] = {"rgb_filters": [8, 16, 16], "hsi_filters": [8, 16, 32], "fc_units": [128, 64]}
            raw["monitor"] = {"interval_s": 0.5}
            t.update(epochs=2, batch_size=50)
        elif scale == "thesis":
            t.update(steady_state_epochs(data, t, STEADY_STEPS))
        return raw


class LandcoverExperiment(Experiment):
    name = "landcover"
    config_class = LandcoverConfig
    view = LandcoverView

    def data_file(self, cfg: LandcoverConfig, progress: bool | None = None) -> Path:
        """The patch file: ``data.patches``, or cut (from the scene, or a cached synthetic one) if missing."""
        from ddl_commodity.data.houston import SYNTHETIC_VERSION, write_synthetic_scene
        from ddl_commodity.data.patches import PatchSpec, extract_patches

        d = cfg.data
        if d.patches is not None:
            return Path(d.patches)
        synthetic = f"synthetic{d.synthetic_scale:g}-s{cfg.seed}-v{SYNTHETIC_VERSION}"
        source = f"scene-{Path(d.scene).name}" if d.scene else synthetic
        bands = "-".join(str(b) for b in d.hsi_bands)
        path = Path(d.cache_dir) / f"patches-{source}-n{d.patches_per_class}-p{d.patch_size}-b{bands}.h5"
        if not path.is_file():
            scene = Path(d.scene) if d.scene else Path(d.cache_dir) / f"houston-{synthetic}"
            if d.scene is None and not scene.exists():
                write_synthetic_scene(scene, d.synthetic_scale, cfg.seed, progress=progress)
            spec = PatchSpec(d.patch_size, d.patches_per_class, tuple(d.hsi_bands), cfg.seed)
            extract_patches(scene, path, spec, progress=progress)
        return path

    def load(self, cfg: LandcoverConfig, path: Path) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        from ddl_commodity.data.patches import load_patches

        data = load_patches(path, cfg.data.patch_size, len(cfg.data.hsi_bands))
        return (data.rgb, data.hsi), data.label

    def columns(self, cfg: LandcoverConfig) -> tuple[tuple[Column, ...], Column]:
        """A data set of ``ddl data houston --patches DIR --format parquet``: RGB and HSI patches in, the class
        out (the inputs in the model's order, as :meth:`load` gives them)."""
        s, bands = cfg.data.patch_size, len(cfg.data.hsi_bands)
        return (Column("rgb", (s, s, 3)), Column("hsi", (s, s, bands))), Column("label", (), "int32", (0, NUM_CLASSES))

    def build_model(self, cfg: LandcoverConfig):
        from ddl_commodity.models.multimodal_cnn import MultimodalCNN

        return MultimodalCNN(model_spec(cfg)).build_on(None)

    def input_shapes(self, cfg: LandcoverConfig) -> list[tuple[int, ...]]:
        spec = model_spec(cfg)  # patches enter without Conv3D's channel axis, which the model adds
        return [(spec.patch_size, spec.patch_size, spec.rgb_bands), (spec.patch_size, spec.patch_size, spec.hsi_bands)]

    def placed_model(self, cfg: LandcoverConfig, placement: Placement):
        from ddl_commodity.models.multimodal_cnn import MultimodalCNN

        return MultimodalCNN(model_spec(cfg), placement).build_on(placement.variables)

    def blocks(self, cfg: LandcoverConfig) -> dict[str, list[str]]:
        from ddl_commodity.models.multimodal_layout import blocks

        return blocks()

    def block_graph(self, cfg: LandcoverConfig) -> BlockGraph:
        from ddl_commodity.models.multimodal_layout import block_graph

        return block_graph(model_spec(cfg))

    def describe(self, cfg: LandcoverConfig) -> str:
        t = cfg.training
        if t.engine == "model_parallel":
            s = self.scheme(cfg)
            return f"model parallel, scheme {s.name} ({s.figure}), {t.workers} workers + PS, batch {t.batch_size}"
        return super().describe(cfg)
