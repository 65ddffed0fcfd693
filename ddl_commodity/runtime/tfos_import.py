"""TensorFlowOnSpark's driver-side modules, imported without loading TensorFlow into the driver.

``tensorflowonspark.TFCluster`` imports ``TFSparkNode`` -> ``TFNode`` -> ``compat``, and ``compat`` starts with
``import tensorflow as tf`` for functions that only run on the executors (each imports its own TensorFlow).
A data-parallel driver runs no TensorFlow at all: its final model is made on the PS node
(:func:`~ddl_commodity.engines.data_parallel_node.final_model_maker`). Loading TensorFlow there anyway would
cost every run ~2.8 CPU-s and ~400 MB of resident memory on the master's PC, which on the thesis profile is a
2 GB node that also runs the Spark master.

:func:`import_tfcluster` imports TFoS while ``sys.modules["tensorflow"]`` is a stand-in that imports the
real module the first time anything reads an attribute from it; the stand-in is gone from ``sys.modules``
as soon as TFoS is imported, so every later ``import tensorflow`` in the driver is an ordinary import. A
driver that has TensorFlow loaded already (a user model's model-parallel run: its block graph is read from
the Keras model) imports TFoS as usual.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types

_LOCK = threading.Lock()


class DeferredModule(types.ModuleType):
    """Stands in for the module ``name``: the first attribute read from it imports the real one, and every
    read is answered by the real module from then on."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._real: types.ModuleType | None = None

    def __getattr__(self, attr: str):  # only for attributes the stand-in itself lacks
        with _LOCK:
            if self._real is None:
                if sys.modules.get(self.__name__) is self:
                    del sys.modules[self.__name__]
                self._real = importlib.import_module(self.__name__)
        return getattr(self._real, attr)

    @property
    def loaded(self) -> bool:
        return self._real is not None


def import_tfcluster() -> types.ModuleType:
    """``tensorflowonspark.TFCluster``, with TensorFlow deferred unless it is loaded already."""
    with _LOCK:
        stand_in = None
        if "tensorflow" not in sys.modules:
            stand_in = sys.modules["tensorflow"] = DeferredModule("tensorflow")
    try:
        return importlib.import_module("tensorflowonspark.TFCluster")
    finally:
        with _LOCK:
            if stand_in is not None and sys.modules.get("tensorflow") is stand_in:
                del sys.modules["tensorflow"]
