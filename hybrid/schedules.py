"""HybridTrainer's step schedules: the fair share, the final phase, and their plan.

A ``fair_steps`` or ``final_steps`` given as a float is a fraction of a planned number of
weight steps; :func:`steps_of` resolves it. :func:`fair_share_at` is the share of each
batch trained under fair paths (:func:`~nondiff.hybrid.sampling.fair_share`, FairNAS,
Chu et al. 2021); :func:`final_at` says whether a step is in the final phase, which
trains the recommended structure alone (SPOS, Guo et al. 2020, retrains it instead).
:func:`plan_warning` is the message for a ``fit`` that plans beyond the plan a fraction
was resolved against.

Sources:
    - X. Chu, B. Zhang, R. Xu, "FairNAS: rethinking evaluation fairness of weight
      sharing neural architecture search", ICCV 2021.
    - Z. Guo, X. Zhang, H. Mu, W. Heng, Z. Liu, Y. Wei, J. Sun, "Single path one-shot
      neural architecture search with uniform sampling", ECCV 2020.

Example:
    >>> from nondiff.hybrid.schedules import fair_share_at, final_at, steps_of
    >>> steps_of(0.25, 40), steps_of(7, None), steps_of(0.5, None)
    (10, 7, None)
    >>> [fair_share_at(t, warmup_steps=1, weight_step="fair", fair_steps=0.5, plan=8)
    ...  for t in range(6)]
    [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    >>> [final_at(t, 0.25, 8) for t in range(4, 8)]
    [False, False, True, True]
"""

from __future__ import annotations

from .sampling import fair_open_at, fair_share

__all__ = ["fair_share_at", "final_at", "open_share_at", "plan_warning", "steps_of"]


def steps_of(steps: int | float, plan: int | None) -> int | None:
    """Steps as given (an int), or a float's fraction of ``plan`` steps, rounded (None
    without a plan)."""
    if not isinstance(steps, float):
        return steps
    return None if plan is None else round(steps * plan)


def fair_share_at(step: int, *, warmup_steps: int, weight_step: str,
                  fair_steps: int | float, plan: int | None) -> float:
    """The share of the batch trained under fair paths at step ``step`` (steps taken
    before it): 1 in warm-up, 0 unless ``weight_step="fair"``, else falling linearly
    from 1 to 0 over ``fair_steps`` (a float: that fraction of ``plan``; 0.5 without
    a plan)."""
    if step < warmup_steps:
        return 1.0
    if weight_step != "fair":
        return 0.0
    steps = steps_of(fair_steps, plan)
    if steps is None:
        return 0.5
    return fair_share(step, steps)


def open_share_at(step: int, *, start: float, end: float, fair_steps: int | float,
                  plan: int | None) -> float:
    """The share of the fair paths that open each gate at step ``step``: from ``start``
    down to ``end`` over ``fair_steps`` (a float: that fraction of ``plan``; ``end``
    without a plan) (:func:`~nondiff.hybrid.sampling.fair_open_at`)."""
    steps = steps_of(fair_steps, plan)
    return end if steps is None else fair_open_at(step, steps, start, end)


def final_at(step: int, final_steps: int | float, end: int | None) -> bool:
    """Whether step ``step`` is one of the last ``final_steps`` before step ``end`` (a
    float: that fraction of ``end``); never without an ``end``."""
    if not final_steps or end is None:
        return False
    final = steps_of(final_steps, end)
    return final > 0 and step >= end - final


def plan_warning(epochs: int, planned: int, plan: int, fair_steps: float | None = None,
                 final_steps: float | None = None) -> str:
    """The warning for ``fit(epochs=epochs)`` planning ``planned`` steps in all beyond
    the ``plan`` a float ``fair_steps`` and/or ``final_steps`` is a fraction of."""
    given = {name: value for name, value in (("fair_steps", fair_steps),
                                             ("final_steps", final_steps)) if value is not None}
    effects = []
    if fair_steps is not None:
        effects.append(f"the fair share ends at step {steps_of(fair_steps, plan)}")
    if final_steps is not None:
        effects.append(f"the final phase (the recommended structure alone) starts at step "
                       f"{plan - steps_of(final_steps, plan)} and lasts to the end")
    names = " and ".join(f"{name}={value}" for name, value in given.items())
    verb = "are fractions" if len(given) > 1 else "is a fraction"
    ints = " and ".join(f"an int {name}" for name in given)
    return (f"fit(epochs={epochs}) plans {planned} steps in all, but {names} {verb} of the "
            f"{plan} steps the first fit planned: {'; '.join(effects)}. For a schedule over "
            f"all fit calls pass HybridTrainer(total_steps={planned}) (the steps of the whole "
            f"training), or {ints}")
