"""ddl-commodity: distributed deep learning on commodity CPU clusters with TensorFlowOnSpark.

Reproduces the experiments of the MSc thesis in ``shared/seed`` (chapters 4-6) as reusable software.
"""

__version__ = "0.1.0"
