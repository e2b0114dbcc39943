"""Comparison benchmarks: reference-library baselines, quality and speed scripts, the CLI."""
