"""Side-by-side performance measurements (run as modules: python -m benchmarks.<name>)."""
