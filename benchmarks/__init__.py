"""Side-by-side measurements of the toolkit; run each as ``python -m benchmarks.<name>``."""
