"""Reproducible benchmarks of genesys-assist; the entry point is `benchmarks/run.py`."""
