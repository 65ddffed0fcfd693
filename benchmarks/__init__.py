"""Side-by-side measurements of the toolkit (issue 6); run each as ``python -m benchmarks.<name>``."""
