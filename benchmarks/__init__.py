"""Comparison benchmarks: suites as data, the resumable runner, the SQLite store, reports,
reference-library baselines, and speed and quality scripts (``python -m
nondiff.benchmarks.<name>``); one-off studies in :mod:`nondiff.benchmarks.studies`.

Example:
    >>> from nondiff.benchmarks import suites
    >>> "quick" in suites.names()
    True
"""
