"""Comparison benchmarks: suites as data, the resumable runner, the SQLite store, reports,
reference-library baselines, and speed and quality scripts (``python -m
nondiff.benchmarks.<name>``).

Example:
    >>> from nondiff.benchmarks import suites
    >>> "quick" in suites.names()
    True
"""
