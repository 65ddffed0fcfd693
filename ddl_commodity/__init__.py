"""ddl-commodity: distributed deep learning on commodity CPU clusters with TensorFlowOnSpark.

Reproduces the experiments of the MSc thesis in ``shared/seed`` (chapters 4-6) as reusable software. The one
call from Python is :func:`run` (``ddl_commodity.launch.api.run``)::

    import ddl_commodity

    summary = ddl_commodity.run("configs/quickstart.yaml")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"
__all__ = ["predict", "run", "spark_conf"]


def __getattr__(name: str) -> Any:
    # Imported on first use: every Spark executor imports this package, and needs none of the driver's code.
    if name == "predict":
        from ddl_commodity.launch.predict import predict

        return predict
    if name in __all__:
        from ddl_commodity.launch import api

        return getattr(api, name)
    raise AttributeError(f"module 'ddl_commodity' has no attribute {name!r}")
