"""Benchmarks: make perf (speed figures) and make bench (the dedup suite)."""
