"""Benchmarks re-run when the code changes: `python -m bench.run`, `python -m bench.scoring`, ... (bench/README.md)."""
