"""Experiment drivers, one module per thesis experiment, each with ``prepare``, ``run`` and ``describe``."""

from __future__ import annotations

from types import ModuleType


def driver_for(cfg) -> ModuleType:
    """The driver module of ``cfg.experiment``."""
    if cfg.experiment == "landcover_model_parallel":
        from ddl_commodity.experiments import landcover

        return landcover
    from ddl_commodity.experiments import redshift

    return redshift
