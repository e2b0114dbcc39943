"""pycma glue for :mod:`nondiff.optim.cmaes`: option checks and quiet pycma components.

Which pycma options the wrapper sets itself (and what to use instead), which ones
make pycma draw from the global ``np.random``, and two pycma components with their
side effects removed (a self-check drawing global random numbers; loggers that
create directories). Reference: N. Hansen et al., pycma, https://github.com/CMA-ES/pycma.

Example:
    >>> from nondiff.optim.backends.pycma_options import check_options
    >>> check_options({"tolfun": 1e-12})
    {'tolfun': 1e-12}
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [  # and QuietAL, QuietTPA: built on first use (see __getattr__)
    "FINAL_STOPS", "FIXED_OPTIONS", "GLOBAL_RNG_OPTIONS", "RESERVED_OPTIONS",
    "check_indices", "check_options", "plain_options",
]  # fmt: skip

# pycma stop reasons that end a restart sequence rather than trigger a restart (as in cma.fmin)
FINAL_STOPS = frozenset({"ftarget", "maxfevals", "callback"})
FIXED_OPTIONS = {"verbose": -9, "verb_disp": 0, "verb_log": 0, "verb_plot": 0, "verb_time": 0,
                  "signals_filename": "", "seed": float("nan")}
RESERVED_OPTIONS = {
    "bounds": "the bounds= argument", "BoundaryHandler": "the bounds= argument",
    "popsize": "the popsize= argument", "popsize_factor": "the popsize= argument",
    "CMA_diagonal": "covariance='diagonal'", "integer_variables": "integer_variables=",
    "randn": "seed= (samples come from the optimizer's own numpy Generator)",
    "seed": "seed=", "timeout": "a budget of minimize() (a wall-clock stop is not reproducible)",
    **{k: "nothing: the wrapper never prints, plots or writes files" for k in (
        "verbose", "verb_disp", "verb_log", "verb_plot", "verb_time", "verb_append",
        "verb_filenameprefix", "verb_log_expensive", "verb_disp_overwrite", "signals_filename")},
}
# options under which pycma may draw from the global np.random; such runs swap in a private
# legacy generator around ask/tell (integer centering draws there too, see _call)
GLOBAL_RNG_OPTIONS = frozenset({"CMA_mirrormethod", "CMA_sampler", "CMA_sampler_options"})


def __getattr__(name: str) -> type:
    """``QuietTPA`` and ``QuietAL`` (:mod:`~nondiff.optim.backends.pycma_quiet`), imported
    on first use: they subclass pycma's classes, and importing pycma (with scipy.stats and
    matplotlib) takes 1.5 s that a process which runs no CMA-ES (a worker, the command
    line) need not wait. Python's import lock makes the first use thread-safe."""
    if name in ("QuietTPA", "QuietAL"):
        from . import pycma_quiet

        return getattr(pycma_quiet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "QuietAL", "QuietTPA"])


def check_indices(indices: Sequence[int]) -> tuple[int, ...]:
    if isinstance(indices, (str, bytes)) or not isinstance(indices, (Sequence, np.ndarray)):
        raise ValueError(f"integer_variables must be a sequence of indices, got {indices!r}")
    out = []
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0:
            raise ValueError(f"integer_variables must hold non-negative integers, got {i!r}")
        out.append(int(i))
    if len(set(out)) != len(out):
        raise ValueError(f"integer_variables has duplicates: {list(indices)!r}")
    return tuple(sorted(out))


def check_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"options must be a dict of pycma options, got {type(options).__name__}")
    import cma

    known = cma.CMAOptions()
    for key in options:
        if not isinstance(key, str) or key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=3, cutoff=0.6)
            close += [k for k in known if k.lower() == str(key).lower() and k not in close]
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"unknown pycma option {key!r}{hint} (see cma.CMAOptions())")
        if key in RESERVED_OPTIONS:
            raise ValueError(f"pycma option {key!r} is set by CMAES; use {RESERVED_OPTIONS[key]}")
    return dict(options)


def plain_options(value: Any) -> Any:
    """Options as comparable plain data (callables by name) for config()."""
    if isinstance(value, Mapping):
        return {str(k): plain_options(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_options(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if callable(value):
        return f"<{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', value)}>"
    return repr(value)
