"""Benchmarks behind `make bench`: each writes its table into BENCHMARKS.md between its own markers."""
