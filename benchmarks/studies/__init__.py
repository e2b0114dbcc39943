"""One-off studies, apart from the suite engine and the named comparison benchmarks.

Each module answers one question with a table and runs by name, ``python -m
nondiff.benchmarks.studies.<name>``:

- ``reinforce_variance``: REINFORCE gradient variance by baseline;
- ``mixed_space``: CMA-ES vs REINFORCE vs GA on a mixed integer/real/categorical space;
- ``miqp``: ADMM vs brute force vs relax-and-round on mixed-integer quadratic programs;
- ``layerwise_admm``: gradient-free layer-wise ADMM (Taylor et al. 2016) vs SGD/Adam;
- ``admm_quantized``: float vs ADMM vs straight-through binary/ternary networks;
- ``tune_clones``: ``tune`` with ``one-plus-lambda`` (clones told, not retrained) vs
  random search on a tiny torch regression.

Example:
    >>> import importlib
    >>> study = importlib.import_module("nondiff.benchmarks.studies.miqp")
    >>> callable(study.main)
    True
"""
