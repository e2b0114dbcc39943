"""``python -m nondiff.benchmarks.hybrid_tasks``: see :mod:`nondiff.benchmarks.hybrid_tasks`."""

from nondiff.benchmarks.hybrid_tasks import main

main()
