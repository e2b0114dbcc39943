"""Fitness from the weight step's own forward pass: a generation scored at no extra compute.

With ``HybridTrainer(search_compute="shared")`` the structures of a generation are not
evaluated on whole batches of their own. The multi-path weight step already splits each
batch's rows among paths — fair paths and this generation's members
(:mod:`nondiff.hybrid.sampling`) — and computes every row's loss under its path before
the update. That loss, on rows the weights have not yet stepped on at this step, is the
member's fitness sample (its *own rows*); :class:`SharedGeneration` accumulates it over
the weight steps of one generation, and the trainer tells the optimizer once every
member has about one batch of rows (``generation_rows``).

Own rows are not paired: each row scores one member, so a member's mean carries the
difficulty of the rows it drew. Measured on ``"relevant-inputs"`` of
:mod:`nondiff.problems.hybrid.acceptance` (11 CMA-ES candidates under half-trained
weights, their loss plus gate cost on all 2000 training rows as the truth, 200 draws),
one batch of own rows per member ranks them with Spearman 0.70 against the truth, 64
rows scored under every member 0.90: a structure cost of 0.02 per gate is smaller than
what the rows contribute. So by default (``HybridTrainer.paired_rows``) each step also
scores ``n // k`` *common rows* of its batch (``k`` members) under every member, with
the same weights, in eval mode: at most one more forward pass of the batch, so the
search stays within twice the weight training (issue 17's bound). The common rows'
differences give the ranking — least squares of all pairs' differences,
``min sum_t w_t sum_{a<b} (f_a - f_b - (l_at - l_bt))^2``, whose normal equations are a
graph Laplacian (:meth:`SharedGeneration.add_common`) — and the own rows give its level
(the rows-weighted mean of the members' own means), which elitists compare across
generations. The common rows of every step count towards ``generation_rows`` with the
own rows, so generations keep coming while the fair share (falling from 1) leaves the
members few rows of their own. At each step every member gets rows of the same batch
under the same weights, so the weights' drift over a generation's steps is common to
all members.

Measured on the acceptance suite (5 seeds, 37 (task, optimizer) rows,
:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`): on par with
``search_compute=1.0`` (a whole batch per candidate every ``popsize`` steps), neither
dominating — with ``final_steps=0.1`` 15 rows meet all three targets of issue 17
against 16; own rows alone (``paired_rows=False``, no extra forward pass) 7.

Why a loss on training rows ranks structures. The loss on a minibatch before the step
that trains on it is, in the first epoch, an unbiased estimate of the current model's
test loss, and its running sum is the prequential code length of the data under the
model (Blier & Ollivier 2018); the sum of training losses over recent steps ranks
architectures as well as a held-out loss at the same training budget (Ru et al. 2021,
"SoTL"; Lyle et al. 2020 tie it to the marginal likelihood). SNAS (Xie et al. 2019)
trains the architecture distribution and the weights on one training loss in one pass.

The fitness is ``fitness(output_rows, y_rows)`` per block of rows (default: the loss),
combined weighted by rows: exact for a mean over rows (losses, error rates); a fitness
that is not a mean (an AUC) becomes a rows-weighted mean of per-block values. Own rows
are scored in train mode (dropout on), as the weight step runs.

A NaN or infinite value, on own or common rows, makes that path's fitness NaN for the
whole generation (so does a path with no rows at all): the structure optimizer then
ranks it worst and counts it (``counters["nonfinite"]``), as a NaN from ``evaluate``.

Sources:
    - L. Blier, Y. Ollivier, "The description length of deep learning models",
      NeurIPS 2018 (prequential coding: each minibatch's loss before training on it).
    - B. Ru, C. Lyle, L. Schut, M. Fil, M. van der Wilk, Y. Gal, "Speedy performance
      estimation for neural architecture search", NeurIPS 2021 (sum of training losses).
    - C. Lyle, L. Schut, B. Ru, Y. Gal, M. van der Wilk, "A Bayesian perspective on
      training speed and model selection", NeurIPS 2020.
    - S. Xie, H. Zheng, C. Liu, L. Lin, "SNAS: stochastic neural architecture search",
      ICLR 2019.

Example:
    >>> import numpy as np
    >>> import torch
    >>> from nondiff.hybrid.shared_fitness import SharedGeneration
    >>> gen = SharedGeneration()
    >>> gen.open(np.array([[0.0], [1.0]]), None, target=8, snapshot={})
    >>> gen.add([0, 1], torch.tensor([0.5, 2.0]), [5, 3])   # step 1: rows 5 and 3
    >>> gen.complete()
    False
    >>> gen.add([0, 1], torch.tensor([1.0, 1.0]), [3, 5])   # step 2
    >>> gen.complete(), gen.fitness().tolist()             # (0.5*5 + 1*3)/8, (2*3 + 1*5)/8
    (True, [0.6875, 1.375])
    >>> gen.add_common(torch.tensor([0.2, 1.2]), 4)        # 4 rows under both: 1 apart
    >>> np.round(gen.fitness(), 6).tolist()                # same mean level, paired gap
    [0.53125, 1.53125]
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["SharedGeneration"]


class SharedGeneration:
    """The open generation of a shared-fitness search and its accumulated fitness.

    ``open`` starts a generation (its encoded candidates, the elitist's incumbent to
    re-score or None, the rows each must reach, and the optimizer's state before its
    ``ask``, which :meth:`state_dict` saves so a resume re-asks the same candidates);
    ``add`` adds one weight step's per-path fitness values (a tensor on the model's
    device, kept there with the step's owners and rows on the host: no host-device
    copy or sync per step); ``complete`` says whether every scored path has
    ``target`` rows; ``fitness`` reduces them and reads the rows-weighted means (one
    host sync).
    Scored paths are the candidates, then the incumbent (the last row).
    """

    def __init__(self) -> None:
        self.encoded: np.ndarray | None = None
        self.incumbent: np.ndarray | None = None
        self.candidates: Any = None  # what ask() returned, told back as is
        self.costs: np.ndarray | None = None
        self.snapshot: Mapping[str, Any] | None = None
        self.target = 0
        self.sums: torch.Tensor | None = None
        self.rows = np.zeros(0, dtype=np.int64)  # evidence: own rows + common rows
        self.own_rows = np.zeros(0, dtype=np.int64)  # rows of each path's own blocks
        self.laplacian: torch.Tensor | None = None  # common rows: sum of w (e_a - e_b)(..)^T
        self.rhs: torch.Tensor | None = None  # sum of w d (e_a - e_b), d = f_a - f_b
        self.common: torch.Tensor | None = None  # rows x (sum of values, count) of common rows
        self.bad: torch.Tensor | None = None  # per path: non-finite values on common rows
        self.pending: list[tuple[torch.Tensor, np.ndarray, np.ndarray]] = []  # add() steps

    @property
    def active(self) -> bool:
        """Whether a generation is open (asked and not yet told)."""
        return self.encoded is not None

    @property
    def size(self) -> int:
        """Scored paths: the candidates, plus the incumbent when there is one."""
        return 0 if self.encoded is None else len(self.encoded) + (self.incumbent is not None)

    def open(self, encoded: np.ndarray, incumbent: np.ndarray | None, target: int,
             snapshot: Mapping[str, Any], candidates: Any = None,
             costs: np.ndarray | None = None) -> None:
        """Start a generation; ``snapshot`` is copied (the optimizer goes on changing)."""
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or target < 1:
            raise ValueError(f"target (rows per candidate) must be a positive integer, got "
                             f"{target!r}")
        self.encoded = np.asarray(encoded, dtype=np.float64)
        self.incumbent = None if incumbent is None else np.asarray(incumbent, dtype=np.float64)
        self.candidates = self.encoded if candidates is None else candidates
        self.costs = costs
        self.snapshot = copy.deepcopy(dict(snapshot))
        self.target = int(target)
        self.sums = None
        self.rows = np.zeros(self.size, dtype=np.int64)
        self.own_rows = np.zeros(self.size, dtype=np.int64)
        self.laplacian = self.rhs = self.common = self.bad = None
        self.pending = []

    def add(self, owners: Sequence[int], values: torch.Tensor, rows: Sequence[int]) -> None:
        """Add one step: path ``owners[j]`` (a scored path's index) had fitness
        ``values[j]`` on ``rows[j]`` rows."""
        if not owners:
            return
        index, weights = np.asarray(owners, dtype=np.int64), np.asarray(rows, dtype=np.int64)
        # reduced in _reduce (one host-to-device copy per generation, not per step)
        self.pending.append((values.detach().reshape(-1).to(torch.float64), index, weights))
        np.add.at(self.rows, index, weights)
        np.add.at(self.own_rows, index, weights)

    def _reduce(self) -> None:
        """Add the pending steps of :meth:`add` into ``sums`` (in their order)."""
        if not self.pending:
            return
        values = torch.cat([v for v, _, _ in self.pending])
        index = torch.as_tensor(np.concatenate([i for _, i, _ in self.pending]),
                                device=values.device)
        weights = torch.as_tensor(np.concatenate([w for _, _, w in self.pending]).astype(
            np.float64), device=values.device)
        if self.sums is None:
            self.sums = torch.zeros(self.size, dtype=torch.float64, device=values.device)
        self.sums.index_add_(0, index, values * weights)
        self.pending = []

    def add_common(self, values: torch.Tensor, rows: int) -> None:
        """Add one block of ``rows`` rows scored under every path (``values[i]``: path
        ``i``'s fitness there, same weights): its differences enter the least squares of
        :meth:`fitness` with every pair weighted ``rows / size``. A non-finite value
        leaves its path out of the block and marks it (on the device): its fitness is
        then NaN."""
        v = values.detach().reshape(-1).to(torch.float64)
        finite = torch.isfinite(v).to(torch.float64)
        v = torch.where(finite > 0, v, torch.zeros_like(v))
        count, w = finite.sum(), float(rows) / self.size
        if self.laplacian is None:
            self.laplacian = torch.zeros(self.size, self.size, dtype=torch.float64,
                                         device=v.device)
            self.rhs = torch.zeros(self.size, dtype=torch.float64, device=v.device)
            self.common = torch.zeros(2, dtype=torch.float64, device=v.device)
            self.bad = torch.zeros(self.size, dtype=torch.float64, device=v.device)
        self.bad += 1.0 - finite
        self.laplacian += w * (count * torch.diag(finite) - torch.outer(finite, finite))
        self.rhs += w * (count * v - v.sum()) * finite
        self.common += torch.stack([v.sum(), count]) * float(rows)  # for the level
        self.rows += int(rows)

    def complete(self) -> bool:
        """Whether every scored path has at least ``target`` rows."""
        return self.active and self.rows.size > 0 and bool(self.rows.min() >= self.target)

    def fitness(self) -> np.ndarray:
        """The rows-weighted mean fitness of each scored path (NaN for a path without
        rows, or with a NaN or infinite value on any of its rows, own or common)."""
        self._reduce()
        sums = np.zeros(self.size) if self.sums is None else self.sums.cpu().numpy()
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            own = np.where(self.own_rows > 0, sums / np.maximum(self.own_rows, 1), np.nan)
        own = np.where(np.isfinite(own), own, np.nan)  # inf: NaN too
        if self.laplacian is None:
            return own
        # a path is scored when its own rows (if any) and its common rows were finite
        good = ~((self.own_rows > 0) & np.isnan(own)) & (self.bad.cpu().numpy() == 0)
        if not good.any():
            return np.full(self.size, np.nan)
        # common rows: least squares of the pairs' differences, min sum w (f_a - f_b - d)^2
        # (normal equations L f = b), its free constant set so the rows-weighted mean
        # equals that of the paths' own means
        relative = np.linalg.lstsq(self.laplacian.cpu().numpy(), self.rhs.cpu().numpy(),
                                   rcond=None)[0]
        ok = good & np.isfinite(own)
        if not ok.any():  # no own rows: the level of the common rows
            common = self.common.cpu().numpy()
            return np.where(good, relative - relative[good].mean()
                            + common[0] / max(common[1], 1.0), np.nan)
        else:
            w = self.own_rows[ok] / self.own_rows[ok].sum()
            level = float(np.sum(w * own[ok])) - float(np.sum(w * relative[ok]))
        return np.where(good, relative + level, np.nan)

    def close(self) -> None:
        """Forget the generation (after its tell)."""
        self.__init__()

    # ----- state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any] | None:
        """Plain lists (None when no generation is open); the optimizer's snapshot is
        saved by the trainer in its place."""
        if not self.active:
            return None
        self._reduce()
        return {"encoded": self.encoded.tolist(),
                "incumbent": None if self.incumbent is None else self.incumbent.tolist(),
                "costs": None if self.costs is None else self.costs.tolist(),
                "target": self.target, "rows": self.rows.tolist(),
                "own_rows": self.own_rows.tolist(),
                "sums": None if self.sums is None else self.sums.cpu().tolist(),
                "laplacian": None if self.laplacian is None else self.laplacian.cpu().tolist(),
                "rhs": None if self.rhs is None else self.rhs.cpu().tolist(),
                "common": None if self.common is None else self.common.cpu().tolist(),
                "bad": None if self.bad is None else self.bad.cpu().tolist()}

    def load_state_dict(self, state: Mapping[str, Any] | None, candidates: Any,
                        snapshot: Mapping[str, Any], device: torch.device) -> None:
        """Restore :meth:`state_dict` output; ``candidates`` are those the restored
        optimizer asks again (they must equal the saved ones)."""
        if state is None:
            self.close()
            return
        encoded = np.asarray(state["encoded"], dtype=np.float64)
        asked = candidates.detach().cpu().numpy() if isinstance(candidates, torch.Tensor) \
            else np.asarray(candidates)
        if asked.shape != encoded.shape or not np.array_equal(asked, encoded):
            raise ValueError("the structure optimizer, restored, asks other candidates than "
                             "the saved open generation; the state dict does not fit it")
        costs = None if state["costs"] is None else np.asarray(state["costs"], np.float64)
        incumbent = state["incumbent"]
        self.open(encoded, None if incumbent is None else np.asarray(incumbent), int(
            state["target"]), snapshot, candidates, costs)
        rows = np.asarray(state["rows"], dtype=np.int64)
        if rows.shape != (self.size,) or (rows < 0).any():
            raise ValueError(f"bad rows {state['rows']!r} of the open generation")
        self.rows = rows
        self.own_rows = np.asarray(state["own_rows"], dtype=np.int64)
        if state["sums"] is not None:
            self.sums = torch.tensor(state["sums"], dtype=torch.float64, device=device)
        if state.get("laplacian") is not None:
            self.laplacian = torch.tensor(state["laplacian"], dtype=torch.float64,
                                          device=device)
            self.rhs = torch.tensor(state["rhs"], dtype=torch.float64, device=device)
            self.common = torch.tensor(state["common"], dtype=torch.float64, device=device)
            bad = state.get("bad")  # states saved before it was kept: no marks
            self.bad = torch.zeros(self.size, dtype=torch.float64, device=device) \
                if bad is None else torch.tensor(bad, dtype=torch.float64, device=device)
