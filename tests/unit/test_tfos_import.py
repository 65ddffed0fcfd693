"""The driver imports TFoS without loading TensorFlow; what stands in for it loads it when used. The executors
import TensorFlow without matplotlib."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_data_parallel_driver_loads_no_tensorflow(tmp_path) -> None:
    """What the driver of a data-parallel run imports and does without a cluster: TFoS's driver side, the
    TensorBoard event files of the nodes' records, the engine's driver module."""
    out = python(f"""
        import sys
        from ddl_commodity.engines import data_parallel
        from ddl_commodity.runtime import session
        from ddl_commodity.runtime.tfos_import import import_tfcluster
        from ddl_commodity.artifacts.tensorboard import RunBoard

        tfcluster = import_tfcluster()
        assert tfcluster.InputMode.SPARK == 1
        with RunBoard({str(tmp_path)!r}) as board:
            board.add("workers/worker-0", {{"epoch": 1, "loss": 0.5, "val_accuracy": 0.75}})
            board.add("ps", {{"event": "applied", "applied_version": 1, "tau": 0, "lambda": 1.0}})
        print("tensorflow" in sys.modules, "tensorflow.python" in sys.modules)
    """)
    assert out.split() == ["False", "False"]
    assert len(list((tmp_path / "tensorboard").glob("*/events.out.tfevents.*"))) == 2


def test_the_stand_in_imports_the_real_module_when_read() -> None:
    out = python("""
        import sys
        from ddl_commodity.runtime.tfos_import import DeferredModule

        stand_in = sys.modules["colorsys"] = DeferredModule("colorsys")
        import colorsys  # what TFoS's `import tensorflow as tf` gets
        assert colorsys is stand_in and not stand_in.loaded
        print(colorsys.rgb_to_hsv(1.0, 0.0, 0.0), stand_in.loaded, sys.modules["colorsys"] is not stand_in)
        import colorsys as again
        print(type(again).__name__, again.hls_to_rgb is stand_in.hls_to_rgb)
    """)
    assert out.split("\n")[:2] == ["(0.0, 1.0, 1.0) True True", "module True"]


def test_executors_import_tensorflow_without_matplotlib() -> None:
    """The executors' pyspark daemon (``spark.python.daemon.module``) refuses matplotlib only while TensorFlow is
    being imported: Keras takes it as absent; a later import of matplotlib works."""
    from ddl_commodity.config import RunConfig
    from ddl_commodity.runtime.spark import tfos_spark_conf

    cfg = RunConfig.model_validate({"experiment": "x", "training": {"mode": "data_parallel", "workers": 1}})
    assert tfos_spark_conf(cfg).get("spark.python.daemon.module") == "ddl_commodity.runtime.pyspark_daemon"
    out = python("""
        import sys
        from ddl_commodity.runtime.pyspark_daemon import install

        install()
        import tensorflow
        from keras.src.visualization import plot_image_gallery
        print("matplotlib" in sys.modules, plot_image_gallery.plt is None)
        import matplotlib.pyplot
        print(matplotlib.pyplot.__name__)
    """)
    assert out.split() == ["False", "True", "matplotlib.pyplot"]
