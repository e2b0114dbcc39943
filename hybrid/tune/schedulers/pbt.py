"""Population-based training (PBT): exploit better members' weights, explore configs.

Jaderberg, Dalibard, Osindero, Czarnecki, Donahue, Razavi, Vinyals, Green, Dunning,
Simonyan, Fernando, Kavukcuoglu, "Population Based Training of Neural Networks",
arXiv:1711.09846, 2017.

A population of ``population`` trials (configs from the optimizer) trains in rounds
of ``interval`` steps. At the end of a round every member pauses (``should_stop()``
is True; ``train`` checkpoints and returns). Once the whole population has paused at
the same step, members are ranked by their last metric: each member in the bottom
``quantile`` *exploits* a member drawn uniformly from the top ``quantile`` — it ends
(``pruned``, reason ``exploited``) and a new trial starts from the donor's checkpoint
(weights and optimizer state, via ``trial.restore()``) with the donor's config after
the *explore* step: with probability ``resample_probability`` the ``mutable`` leaves
take the values of the optimizer's next proposal (the new trial then informs the
optimizer for that proposal), otherwise each is perturbed (reals x0.8 or x1.2,
integers and categoricals to a neighbour: :func:`~nondiff.hybrid.tune.space.perturb`).
The others resume from their own checkpoints. A population ends when its members
reach ``max_steps``; the next one starts from new proposals while budget remains.

The optimizer learns from each founder (and each copy that took a proposal) when it
pauses at the end of its first round, ranked by its metric there (the ranking PBT
itself uses; :mod:`~nondiff.hybrid.tune.proposals`), so later explore steps and later
populations draw from an optimizer that has seen the earlier rounds.

Rounds are synchronous (the truncation-selection variant of the paper, run in rounds
rather than by asynchronous workers), so the result does not depend on worker timing
and a study resumed after a crash decides as before. The donor draw and the explore
step are seeded by (study seed, population, step).

Checkpoints: exploit copies only from members paused at the current round, so a
member's checkpoint is deleted when it ends (reached ``max_steps``, exploited, or
pruned by the budget); the study holds at most one checkpoint per live member
(:meth:`~nondiff.hybrid.tune.schedulers.base.Scheduler.keeps_checkpoint`).

Leaves whose change would make the copied weights unusable (width, depth) belong
outside ``mutable``: the copy keeps the donor's value for them. Explore changes
categorical leaves too: a copy may get ``"adam"`` where its donor trained with
``"sgd"``, so a ``train`` that restores the donor's optimizer state from
``trial.restore()`` must handle a config that differs from the checkpoint's (e.g.
load the optimizer state only when the checkpoint stored the same optimizer name, else
start a fresh optimizer on the restored weights), or name the leaves explore may
change, ``PBT(mutable=["lr", "weight_decay"])``, to keep such a leaf fixed.

Example:
    >>> from nondiff.hybrid.tune.schedulers.pbt import PBT
    >>> pbt = PBT(interval=4, population=8)
    >>> pbt.bind(max_steps=20, mode="max")
    >>> pbt.on_report(None, 4, 0.5, {}), pbt.on_report(None, 5, 0.5, {})
    ('pause', 'continue')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..space import check_leaf_names, perturb
from ..study import TrialRecord, score
from ..trial import CONTINUE, PAUSE
from .base import NEW, WAIT, Exploit, Resume, Scheduler, check_number

__all__ = ["PBT"]


class PBT(Scheduler):
    """Population-based training; see the module docstring.

    Args:
        interval: steps per round (default: ``max(1, max_steps // 5)``).
        population: members per population (default: the optimizer's popsize).
        quantile: fraction in the bottom that exploits / in the top that donates.
        resample_probability: chance that explore takes the optimizer's next proposal
            for the mutable leaves instead of perturbing them.
        mutable: leaf names that explore changes (default: all).
    """

    name = "pbt"
    tells_clones = False  # a member's outcome depends on its population's exploits

    def __init__(self, interval: int | None = None, population: int | None = None,
                 quantile: float = 0.25, resample_probability: float = 0.25,
                 mutable: Sequence[str] | None = None) -> None:
        self.interval = None if interval is None else check_number(
            "PBT interval", interval, low=1, integer=True, fix="steps between exploit steps")
        self.population = None if population is None else check_number(
            "PBT population", population, low=2, integer=True,
            fix="PBT needs at least 2 members to copy from one another")
        self.quantile = check_number("PBT quantile", quantile, low=0.0, high=0.5, low_open=True,
                                     fix="0.25 copies the top quarter into the bottom quarter")
        self.resample_probability = check_number("PBT resample_probability",
                                                 resample_probability, low=0.0, high=1.0)
        self.mutable = None if mutable is None else list(mutable)

    def bind(self, max_steps, mode, *, space=None, seed=0, popsize=8) -> None:
        super().bind(max_steps, mode, space=space, seed=seed, popsize=popsize)
        self.space = space
        interval = self.interval if self.interval is not None else max(1, max_steps // 5)
        if interval >= max_steps:
            raise ValueError(f"PBT interval={interval} must be below max_steps={max_steps} "
                             "(no exploit step would ever happen); lower it")
        self.every = interval
        self.size = self.population if self.population is not None else max(2, popsize)
        self.names = check_leaf_names(space, self.mutable, "PBT mutable") \
            if space is not None else None

    def on_report(self, trial, step, metric, trials) -> str:
        return PAUSE if step % self.every == 0 and step < self.max_steps else CONTINUE

    # ----- populations ---------------------------------------------------------------
    def _population_of(self, trials: Mapping[int, TrialRecord]) -> dict[int, int]:
        founders = sorted(n for n, t in trials.items() if t.parent is None)
        index = {n: i // self.size for i, n in enumerate(founders)}
        for n in sorted(trials):  # a copy is created after its donor: numbers increase
            if n not in index:
                index[n] = index[trials[n].parent]
        return index

    def next_actions(self, trials: Mapping[int, TrialRecord], propose) -> object:
        index = self._population_of(trials)
        if not index:
            return NEW
        current = max(index.values())
        members = [t for n, t in sorted(trials.items()) if index[n] == current]
        if sum(t.parent is None for t in members) < self.size:
            return NEW
        live = [t for t in members if t.state in ("running", "paused")]
        if not live:
            return NEW
        if any(t.state == "running" for t in live):
            return WAIT
        step = min(t.last_step for t in live)
        ready = [t for t in live if t.last_step == step]
        ranked = sorted(ready, key=lambda t: (-score(t.curve[-1][1], self.mode), t.number))
        cut = math.floor(len(ranked) * self.quantile) if len(ranked) > 1 else 0
        cut = max(cut, 1) if len(ranked) > 1 else 0
        top, bottom = ranked[:cut], ranked[len(ranked) - cut:] if cut else []
        rng = np.random.default_rng([self.seed, current, step])
        actions: list[object] = []
        for t in ranked:
            if t in bottom:
                donor = top[int(rng.integers(len(top)))]
                actions.append(self._exploit(t, donor, rng, propose))
            else:
                actions.append(Resume(t.number))
        return actions

    def _exploit(self, member: TrialRecord, donor: TrialRecord, rng: np.random.Generator,
                 propose) -> Exploit:
        row = np.asarray(donor.encoded, dtype=np.float64)
        if rng.random() < self.resample_probability:
            proposal = propose()
            if proposal is not None:
                batch, index, encoded = proposal
                new = row.copy()
                for name, _, part in self.space.leaves():
                    if name in self.names:
                        new[part] = np.asarray(encoded)[part]
                return Exploit(member.number, donor.number, new, (batch, index))
        return Exploit(member.number, donor.number, perturb(self.space, row, rng, self.names))

    def settings(self) -> str:
        return (f"PBT(interval={self.every}, population={self.size}, quantile={self.quantile}, "
                f"resample_probability={self.resample_probability}, mutable={self.names})")

    def __repr__(self) -> str:
        return (f"PBT(interval={self.interval}, population={self.population}, "
                f"quantile={self.quantile}, resample_probability={self.resample_probability}, "
                f"mutable={self.mutable})")
