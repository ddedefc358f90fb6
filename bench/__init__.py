"""Speed benchmarks: run from the repo root as `python -m bench.NAME`."""
