"""Benchmarks of the whole network and its parts (bench/README.md)."""
