"""Benchmarks: each bench_*.py runs as a script and prints ratios via _report."""
