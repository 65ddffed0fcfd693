"""PySpark's daemon (``spark.python.daemon.module``) for the toolkit's executors: ``pyspark.daemon``, run
after one import hook is installed.

Every TF node imports TensorFlow: TFoS's node code starts with ``import tensorflow``. TensorFlow's import
loads Keras's image-gallery helper, which imports ``matplotlib.pyplot`` if it can: 0.45 of the 3.0 CPU-s
the import costs, in every node of every run, for a plot no node draws. :class:`NoMatplotlibDuringTensorFlowImport`
answers any import of matplotlib made *while TensorFlow is being imported* with ImportError, which Keras
takes as "no matplotlib"; every other import of matplotlib (a user's model, later in the same process) is
untouched. The daemon forks each Python worker of the executor, so each inherits the hook.
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys


class NoMatplotlibDuringTensorFlowImport(importlib.abc.MetaPathFinder):
    """Refuses ``matplotlib`` and its submodules while the ``tensorflow`` module is still initializing."""

    def find_spec(self, fullname: str, path, target=None):
        if fullname.partition(".")[0] != "matplotlib":
            return None
        spec = getattr(sys.modules.get("tensorflow"), "__spec__", None)
        if getattr(spec, "_initializing", False):
            raise ImportError(f"{fullname} is not loaded during TensorFlow's import on a node", name=fullname)
        return None


def install() -> None:
    if not any(isinstance(f, NoMatplotlibDuringTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, NoMatplotlibDuringTensorFlowImport())


if __name__ == "__main__":
    install()
    runpy.run_module("pyspark.daemon", run_name="__main__", alter_sys=True)
