"""Which structures the shared weights train under: fair paths, then the search's own.

Weight sharing (ENAS, Pham et al. 2018) trains one set of weights for every structure a
search may pick, and ranks structures by their fitness under those weights. If the
weights train under the structure the search currently prefers, that structure gets
the best-trained weights and looks better still (rich get richer): an early, lucky
choice — often the one that trains fastest, such as an identity activation, which
makes the net linear — is locked in. Issue 17 saw a GA and CMA-ES pick the identity
(chance accuracy) where REINFORCE, whose distribution stays broad, found the task.

The remedy of one-shot NAS is to train the weights under structures the search does not
choose: Bender et al. (2018) showed that a one-shot model trained with path dropout
ranks architectures as training them alone would; Guo et al. (2020, SPOS) train it
under uniformly sampled single paths; Chu et al. (2021, FairNAS) showed that even
uniform sampling leaves some choices trained more often in any stretch of steps and
that strict fairness — every option of every choice trained exactly once per step,
the gradients of those paths summed into one update — ranks better still. This module
builds those training structures:

- :func:`fair_structures` ``(space, k, rng)``: ``k`` structures in which every value of
  every discrete entry appears equally often (exactly, when its number of values divides
  ``k``; else within one), each entry's values in an independent random order (FairNAS
  permutes each layer's choices independently); gates are open in half of the paths
  (or ``open_share`` of them: :data:`FAIR_OPEN`; the trainer starts from every gate open:
  :func:`fair_open_at`, :data:`FAIR_OPEN_START`); real entries are stratified (one per
  ``1/k`` of their range, Latin hypercube); permutations are drawn uniformly.
- :func:`fair_paths` ``(space)``: ``k`` — the least common multiple of the entries'
  numbers of values (so every value of every entry gets exactly ``k / c`` paths), capped.
- :func:`split_rows` ``(n, weights)``: the rows of a batch per path; :func:`merge_small`
  gives a path's too few rows to the largest path (a batch norm needs two).
- :func:`fair_share` ``(step, fair_steps)``: the schedule of the trainer's default
  ``weight_step="fair"``: the share of each batch trained under fair paths falls
  linearly from 1 to 0 over ``fair_steps``; the rest trains under the search's current
  generation (its distribution or population), so the weights end specialised to what
  the search has found.

No forward pass is added: FairNAS runs ``k`` paths on ``k`` copies of the batch; here the
``k`` paths share the batch, ``n / k`` rows each, in one forward pass
(:func:`~nondiff.hybrid.structure.batched_structures`) and one update — the same
examples and compute as one single-path step.

Sources:
    - G. Bender, P.-J. Kindermans, B. Zoph, V. Vasudevan, Q. Le, "Understanding and
      simplifying one-shot architecture search", ICML 2018.
    - Z. Guo, X. Zhang, H. Mu, W. Heng, Z. Liu, Y. Wei, J. Sun, "Single path one-shot
      neural architecture search with uniform sampling", ECCV 2020.
    - X. Chu, B. Zhang, R. Xu, "FairNAS: rethinking evaluation fairness of weight
      sharing neural architecture search", ICCV 2021.
    - H. Pham, M. Guan, B. Zoph, Q. Le, J. Dean, "Efficient neural architecture search
      via parameter sharing", ICML 2018.

Example:
    >>> import numpy as np
    >>> from nondiff.hybrid.sampling import fair_paths, fair_structures, split_rows
    >>> from nondiff.optim.spaces import Binary, Categorical, Product
    >>> space = Product(act=Categorical(["relu", "tanh", "identity"]), gates=Binary(4))
    >>> k = fair_paths(space)  # lcm(3, 2)
    >>> paths = fair_structures(space, k, np.random.default_rng(0))
    >>> k, np.bincount(paths[:, 0].astype(int)).tolist(), paths[:, 1:].sum(axis=0).tolist()
    (6, [2, 2, 2], [3.0, 3.0, 3.0, 3.0])
    >>> split_rows(64, [1.0] * k)
    [11, 11, 11, 11, 10, 10]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from nondiff.optim.spaces import Space

__all__ = ["FAIR_OPEN", "FAIR_OPEN_START", "MAX_FAIR_PATHS", "fair_open_at", "fair_paths",
           "fair_share", "fair_structures", "merge_small", "split_rows"]

MAX_FAIR_PATHS = 12
"""The most paths one fair step trains (a batch of 64 then gives each path 5 rows)."""
FAIR_OPEN = 0.5
"""The default share of the fair paths in which each gate (binary entry) is open (both
states equally often, as every value of a choice). ``open_share`` (``HybridTrainer(
fair_open=...)``) above it trains inputs that matter only together (a product
``x_2 x_5``, an XOR) in more paths: a pair is open together in ``1/4`` of the paths at
one half, ``4/9`` at 2/3, ``9/16`` at 3/4; ``open_share * k`` is rounded up or down at
random. Measured (issue 17; ``"inputs-and-activation"`` of
:mod:`nondiff.problems.hybrid.acceptance`, fair paths alone, 320 steps, 5 seeds): the
loss of the known structure under the shared weights fell from 0.69 to 0.58-0.60 at one
half, to 0.33-0.37 at 3/4 (trained alone: 0.08). On the acceptance benchmark
(``run_suite(["relevant-inputs", "inputs-and-activation"], 10, fair_open=...)`` of
:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`: the bounded trainer's defaults, 10
seeds, the 12 optimizers that search the gated tasks), at 1/2 / 2/3 / 3/4: runs that
collapsed to all gates closed on ``"inputs-and-activation"`` (the structure cost came on
before the weights had learned the product) 13 / 5 / 9 of 120; (task, optimizer) rows
meeting all three targets of issue 17 6 / 9 / 6 of 25; ``"relevant-inputs"`` runs
recovered 71 / 66 / 66 of 130 (CMA-ES-torch 9 -> 3 of 10 at 2/3). More noise inputs are
open while the weights train, and on issue 17's sphere task without a cost the GA kept
the identity activation on 0 / 2 / 1 of 8 seeds: the default stays at one half."""


FAIR_OPEN_START = 1.0
"""The default share of the fair paths that open each gate at the first step
(``HybridTrainer(fair_open_start=...)``): every gate open, as in a plain network, falling
linearly to :data:`FAIR_OPEN` over the fair steps (:func:`fair_open_at`). Bender et al.
(2018) ramp their one-shot model's path dropout up from none the same way: weights that
first learn the whole input learn what only several inputs together decide. With a gate
open in half of the paths from the start, the shared weights of issue 17's
``"inputs-and-activation"`` (``x_2 x_5 > 0``) saw both inputs of the product in a quarter
of them, barely learned it, and the structure cost then closed every gate in some runs.
Measured (the acceptance suite's four gated tasks, 13 optimizers, seeds 0-9, with the
late selection; ``fair_open_start=0.5`` against the default): seeds recovering the
structure on relevant-inputs / inputs-and-activation / head-choice / many-inputs 128 /
117 / 130 / 95 -> 129 / 130 / 129 / 92 of 130 each (inputs-and-activation: every run;
its rows meeting all three targets on seeds 0-4 7 -> 13 of 13, head-choice 13 -> 12).
Fair paths alone on inputs-and-activation: the known structure's loss 0.15 after 320
steps, against 0.58-0.60 with half the gates open throughout. On a task written after
(24 inputs, 4 relevant, ``1[x2 x9 + |x14| - 0.5 x21 > 0.8]``, the activation choice, a
cost of 0.02 per gate; 13 optimizers x 3 seeds) the runs ending on the known structure
5 -> 8 of 39 — most still keep one or two inputs: it is not solved."""


def fair_paths(space: Space, limit: int = MAX_FAIR_PATHS) -> int:
    """How many paths a fair step trains: the least common multiple of the numbers of
    values of the space's discrete entries (every value then gets the same number of
    paths), or their largest number of values where that multiple exceeds ``limit``,
    capped at ``limit``; at least 2.

    Example:
        >>> from nondiff.optim.spaces import Binary, Categorical, Integer, Product
        >>> fair_paths(Product(a=Categorical("abcd"), g=Binary(3)))
        4
        >>> fair_paths(Product(a=Categorical("abc"), b=Integer(1, 5)))  # lcm 15 > 12
        5
    """
    counts = [int(leaf.cardinality) for _, leaf, _ in space.leaves()
              if leaf.kind in ("binary", "categorical", "integer")]
    lcm = math.lcm(*counts) if counts else 2
    k = lcm if lcm <= limit else max(counts)
    return int(min(max(k, 2), limit))


def fair_structures(space: Space, k: int, rng: np.random.Generator,
                    open_share: float = FAIR_OPEN) -> np.ndarray:
    """``(k, space.size)`` encoded structures, fair per entry (see the module docstring);
    each gate (binary entry) open in ``open_share`` of the paths (:data:`FAIR_OPEN`):
    ``floor(open_share * k)`` or one more, at random, so ``open_share`` on average.

    Raises:
        ValueError: ``k`` < 1, or a real entry without finite bounds (nothing uniform to
            stratify; give the :class:`~nondiff.hybrid.structure.RealParam` bounds), or
            ``open_share`` outside ``[0, 1]``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (paths) must be a positive integer, got {k!r}")
    if isinstance(open_share, bool) or not isinstance(open_share, (int, float)) or \
            not 0.0 <= open_share <= 1.0:
        raise ValueError(f"open_share must be a number in [0, 1] (the share of the paths "
                         f"that open each gate), got {open_share!r}; e.g. {FAIR_OPEN}")
    out = np.empty((k, space.size))
    for name, leaf, where in space.leaves():
        columns = range(where.start, where.stop)
        if leaf.kind == "binary" and open_share != 0.5:  # gates open in open_share of them
            exact = open_share * k
            for j in columns:
                opened = int(np.floor(exact)) + int(rng.random() < exact - np.floor(exact))
                out[:, j] = rng.permutation(k) < opened
        elif leaf.kind in ("binary", "categorical", "integer"):
            c = int(leaf.cardinality)
            for j in columns:
                if c <= k:  # each value floor or ceil k / c times, at random paths
                    values = np.concatenate([rng.permutation(c) for _ in range(-(-k // c))])
                    values = rng.permutation(values[:k])
                else:  # k distinct values: each equally likely, none twice
                    values = rng.choice(c, size=k, replace=False)
                out[:, j] = leaf.offset + values
        elif leaf.kind == "real":
            lower, upper = leaf.bounds()
            if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
                raise ValueError(f"fair paths stratify real entries over their range; "
                                 f"{name or 'the space'} is {leaf!r}, unbounded: give it "
                                 "finite bounds, or pass weight_step='population'")
            for i, j in enumerate(columns):  # Latin hypercube: one path per stratum
                strata = (rng.permutation(k) + rng.random(k)) / k
                out[:, j] = lower[i] + strata * (upper[i] - lower[i])
        else:  # permutations (and any other leaf): uniform draws
            out[:, where] = leaf.sample(rng, k)
    return out


def split_rows(n: int, weights: Sequence[float]) -> list[int]:
    """``n`` rows split in proportion to ``weights`` (largest remainders; earlier paths
    get the extra rows first), summing to ``n``."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be non-negative finite numbers, not all 0, got {weights}")
    exact = n * w / w.sum()
    rows = np.floor(exact).astype(np.int64)
    extra = n - int(rows.sum())
    order = np.argsort(-(exact - rows), kind="stable")
    rows[order[:extra]] += 1
    return rows.tolist()


def merge_small(rows: Sequence[int], least: int) -> list[int]:
    """``rows`` (the rows of each path of a batch) with every count between 0 and
    ``least`` moved to the largest one (the first of equal ones), so that no path has
    fewer than ``least`` rows unless the batch has; the total is unchanged. A batch
    norm needs ``least=2``: one row has no variance.

    Example:
        >>> merge_small([5, 1, 4, 1, 0], least=2)
        [7, 0, 4, 0, 0]
    """
    out = [int(r) for r in rows]
    if not out:
        return out
    largest = int(np.argmax(out))
    for i, r in enumerate(out):
        if i != largest and 0 < r < least:
            out[largest] += r
            out[i] = 0
    return out


def fair_open_at(step: int, fair_steps: int, start: float = FAIR_OPEN_START,
                 end: float = FAIR_OPEN) -> float:
    """The share of the fair paths that open each gate at ``step`` (steps taken before
    it): ``start`` at step 0, falling linearly to ``end`` at ``fair_steps`` and ``end``
    after (``end`` at once when ``fair_steps`` is 0) — Bender et al. (2018)'s ramp of
    the path-dropout rate, from none to its final rate.

    Example:
        >>> [fair_open_at(t, 4) for t in range(6)]
        [1.0, 0.875, 0.75, 0.625, 0.5, 0.5]
    """
    if fair_steps <= 0:
        return float(end)
    return float(start + (end - start) * min(1.0, max(0.0, step / fair_steps)))


def fair_share(step: int, fair_steps: int) -> float:
    """The share of a batch trained under fair paths at ``step`` (steps taken before
    it): ``1 - step / fair_steps``, clipped to ``[0, 1]`` (0 when ``fair_steps`` is 0).

    Example:
        >>> [fair_share(t, 4) for t in range(6)]
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    if fair_steps <= 0:
        return 0.0
    return float(min(1.0, max(0.0, 1.0 - step / fair_steps)))
