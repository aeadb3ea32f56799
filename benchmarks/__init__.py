"""Side-by-side performance measurements: ``python -m benchmarks.<name>`` runs one benchmark,
``python -m benchmarks.run`` runs them all and writes results/benchmarks/README.md."""
