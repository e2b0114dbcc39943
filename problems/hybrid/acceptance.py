"""Acceptance tasks for structure search with shared weights: the right structure is known.

Nine small classification tasks on data generated here from a seed, each with a
model that declares its discrete structure, the structure that solves it, and a check
of a found structure against it (:class:`AcceptanceTask`). They judge
:class:`~nondiff.hybrid.trainer.HybridTrainer` with any structure optimizer: a search
that works finds the known structure and reaches the accuracy of that structure
trained alone.

- ``"relevant-inputs"`` (:func:`relevant_inputs`): 12 standard normal inputs, the
  label is ``1[x_1^2 + x_4^2 + x_9^2 > m]`` (``m`` the median of a chi-square with 3
  degrees of freedom: balanced classes), not linearly separable; :class:`GatedMLP`
  puts :class:`~nondiff.hybrid.structure.Gates` on the inputs before a ReLU MLP.
  Known: the gates of inputs 1, 4 and 9 open, all others closed. A noise input
  costs no accuracy, so the task comes with a structure cost of
  :data:`GATE_COST` per open gate (feature selection as an L0 penalty).
- ``"nonlinearity"`` (:func:`needed_nonlinearity`): four standard normal inputs, the
  label is ``1[x_0^2 + x_1^2 > m]`` (a circle; ``m = 2 ln 2``, the median: balanced
  classes). :class:`ActivationNet` is an additive model, ``Linear(act_i(a_i x_i +
  b_i))`` with a learned scale and shift per input and each ``act_i`` a ``Choice`` of
  :data:`ACTIVATIONS` that includes ``nn.Identity()`` (chance here: the trap of
  weight-sharing search, issue 17). Only ``square`` on inputs 0 and 1 makes the
  circle linear in the features (about 99 % test accuracy trained alone); ``abs``
  gives a diamond (about 94 %), the monotone ReLU and tanh about 73 %. Known:
  ``square`` for inputs 0 and 1, anything for the noise inputs 2 and 3.
- ``"op-graph"`` (:func:`op_graph`): four inputs pass through a fixed graph of three
  binary op slots, ``t = op3(op1(x_0, x_1), op2(x_2, x_3))``, and a small MLP head on
  ``t``; each slot is a ``Choice`` among :data:`OPS` (125 graphs,
  :class:`OpGraph`). The label is ``1[x_0 x_1 + (x_2 - x_3) > 0]``. Known:
  ``(mul, sub, add)``; the best other graph allows about 85 % accuracy (a binned
  Bayes classifier of its ``t``), the known one 100 %.
- ``"inputs-and-activation"`` (:func:`inputs_and_activation`): the case issue 17
  reports, both kinds at once: 8 inputs, the label ``1[x_2 x_5 > 0]``;
  :class:`GatedActivationMLP` has ``Gates`` on the inputs and a ``Choice`` of
  identity, ReLU and tanh after its hidden layer (identity: chance; closing input 2
  or 5: chance). Known: gates 2 and 5 open, the rest closed (cost
  :data:`GATE_COST` per open gate), ReLU or tanh.

Three more (issue 17: does it generalize beyond the four it was tuned on?), each a
structure kind or shape the four lack:

- ``"frequencies"`` (:func:`frequencies`): an integer structure. One input ``x``
  uniform on ``[-1, 1]``, the label ``1[sin(3 pi x) > 0]``; :class:`FourierNet` is a
  linear classifier on the Fourier features ``sin(j pi x), cos(j pi x)``, ``j = 1 ..
  n_freq``, with ``n_freq`` an :class:`~nondiff.hybrid.structure.IntParam` in ``[1, 8]``.
  Frequencies 1 and 2 are orthogonal to the label (chance, about 50 %); any ``n_freq >=
  3`` solves it (about 99.5 % trained alone, the same loss), so the task has a cost of
  :data:`FREQUENCY_COST` per frequency. Known: ``n_freq = 3``. (A square wave of
  frequency 3 has harmonics 3, 9, 15, ...: the features 4 to 8 do not sharpen it.)
- ``"routing"`` (:func:`routing`): ``Choice`` slots route inputs to sub-modules. Eight
  standard normal inputs, the label ``1[x_2 x_6 + x_4^2 > m]`` (``m`` the median);
  :class:`RoutedNet` feeds the inputs its slots ``left`` and ``right`` pick into a
  product unit and the one ``curve`` picks into a learned 1-D curve (8 options a slot,
  512 structures). Known: ``x2`` and ``x6`` into the product (either order:
  :attr:`AcceptanceTask.alternatives`), ``x4`` into the curve (about 95 % trained alone;
  ``x4`` and ``x6`` swapped: chance; ``x0`` for ``x2``: about 79 %).
- ``"program"`` (:func:`program_task`): a :class:`~nondiff.hybrid.structure.Program` of
  3 tokens over :data:`LIST_OPS` (identity, abs, sort, relu, neg, cumsum: 216
  programs) makes the features of 8 standard normal inputs for a linear classifier,
  through a batch norm without affine parameters (:class:`ProgramNet`). The label is
  ``1[sort(|x|)[6] > m]`` (the second largest magnitude above its median). Known:
  ``abs`` then ``sort``; accepted: the 13 programs whose features contain ``sort(|x|)``
  linearly (:func:`solving_programs`, e.g. ``neg, abs, sort``). Trained alone about
  97-99 % (``abs, sort, cumsum``, accepted but badly conditioned: about 91 %); ``sort,
  abs``, ``sort`` or ``abs`` alone, or ``abs, cumsum``, about 80 %.

One more, written after the seven as a check on a structure kind none of them has:

- ``"head-choice"`` (:func:`head_choice`): a ``Choice`` between modules that hold their
  own weights. Six standard normal inputs, the label ``1[x_0 x_3 > 0]`` (an XOR of signs:
  no linear model beats chance); :class:`GatedHeads` has ``Gates`` on the inputs and a
  ``Choice`` of a linear head or an MLP head, each with its own weights (the linear one
  learns faster at first). Known: gates 0 and 3 open, the rest closed (cost
  :data:`GATE_COST` per open gate), the MLP head (about 99 % trained alone; the linear
  head about 50 %).

And one written after the eight, as a new user's first try of issue 17's case on more
inputs (it is not solved: the acceptance benchmark's docstring has the numbers):

- ``"many-inputs"`` (:func:`many_inputs`): 20 standard normal inputs, the label
  ``1[x_5^2 + x_11^2 + x_17^2 > m]`` (``m`` the chi-square median, as
  ``"relevant-inputs"``) for :class:`GatedActivationMLP` with 32 hidden units: gates on
  20 inputs and the identity / ReLU / tanh choice (2^20 x 3 structures; cost
  :data:`GATE_COST` per open gate). Known: gates 5, 11 and 17 open, the rest closed,
  ReLU (about 98 % trained alone; tanh about 94 %, identity chance, one of the three
  inputs closed about 81 %).

And one written after the late selection and the ramp of open gates of issue 17's
fifth and sixth sessions, as a check on inputs that matter in different ways (it is not
solved either):

- ``"mixed-inputs"`` (:func:`mixed_inputs`): 24 standard normal inputs, the label
  ``1[x_2 x_9 + |x_14| - x_21 / 2 > m]`` (``m`` the median: :data:`MIXED_MEDIAN`) for
  :class:`GatedActivationMLP` with 32 hidden units (2^24 x 3 structures; cost
  :data:`GATE_COST` per open gate). Known: gates 2, 9, 14 and 21 open, the rest closed,
  ReLU or tanh (trained alone about 96 % with ReLU, 95 % with tanh; the identity about
  65 %, ``x_9`` closed about 77 %). The product's two inputs are worth something only
  together.

And one written with the screen of closed gates (:mod:`nondiff.hybrid.gate_screen`), as
a check on a task it was not designed on:

- ``"two-pairs"`` (:func:`two_pairs`): 20 standard normal inputs, the label
  ``1[x_1 x_7 + x_13 x_18 > 0]`` for :class:`GatedActivationMLP` with 32 hidden units
  (cost :data:`GATE_COST` per open gate). Known: gates 1, 7, 13 and 18 open, ReLU or
  tanh (trained alone about 98 % with ReLU, 94 % with tanh; one input closed about 72 %,
  the identity about 57 %). No input is worth anything without its partner.

Every task fixes its data (:class:`~nondiff.problems.learning.Dataset`: a training
and a test split from one seeded generator), a model factory, the known structure
(:attr:`AcceptanceTask.known`, one representative to train alone) and
:meth:`AcceptanceTask.recovered`. The experiment that runs every registry optimizer
on them is ``python -m nondiff.benchmarks.hybrid_tasks.acceptance``
(:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`).

Sources: feature selection by gates with an L0 cost, C. Louizos, M. Welling,
D. Kingma, "Learning sparse neural networks through L0 regularization", ICLR 2018;
op choices per edge of a cell, H. Liu, K. Simonyan, Y. Yang, "DARTS: differentiable
architecture search", ICLR 2019 (here searched, not relaxed).

Example:
    >>> from nondiff.problems.hybrid.acceptance import make_task
    >>> task = make_task("op-graph", seed=0)
    >>> task.known
    {'op1': 'mul', 'op2': 'sub', 'op3': 'add'}
    >>> task.recovered({"op1": "mul", "op2": "sub", "op3": "add"})
    True
    >>> task.recovered({"op1": "mul", "op2": "add", "op3": "add"})
    False
    >>> len(task.data.y_train), task.data.features
    (2000, 4)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from nondiff.hybrid.structure import Choice, Gates, IntParam, Program
from nondiff.problems.learning import Dataset
from scipy.stats import chi2
from torch import nn

__all__ = [
    "ACTIVATIONS", "FREQUENCY", "FREQUENCY_COST", "GATE_COST", "HEAD_INPUTS", "LIST_OPS",
    "MIXED_INPUTS", "MIXED_MEDIAN", "OPS", "PAIR",
    "PROGRAM_RANK", "PROGRAM_THRESHOLD", "RELEVANT", "ROUTES", "ROUTING_MEDIAN",
    "SPHERE_INPUTS", "TASKS", "TWO_PAIRS",
    "AcceptanceTask", "ActivationNet", "FourierNet", "GatedActivationMLP", "GatedHeads",
    "GatedMLP",
    "OpGraph", "ProgramNet", "RoutedNet", "frequencies", "head_choice", "inputs_and_activation",
    "make_task", "many_inputs", "mixed_inputs", "needed_nonlinearity", "op_graph", "program_task",
    "relevant_inputs", "routing", "solving_programs", "two_pairs",
]  # fmt: skip

GATE_COST = 0.02
"""Structure cost of one open input gate in the gated tasks (in nats of loss)."""


class _Elementwise(nn.Module):
    """A plain elementwise function as a module."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", "")


def _square(x: torch.Tensor) -> torch.Tensor:
    return x * x


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "abs": lambda: _Elementwise(torch.abs),
    "square": lambda: _Elementwise(_square),
}
"""The activations of :class:`ActivationNet`'s ``Choice`` (name -> module factory)."""


OPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "add": lambda p: p[:, 0] + p[:, 1],
    "sub": lambda p: p[:, 0] - p[:, 1],
    "mul": lambda p: p[:, 0] * p[:, 1],
    "max": lambda p: p.amax(1),
    "min": lambda p: p.amin(1),
}
"""The binary ops of an :class:`OpGraph` slot; each maps ``(batch, 2)`` to ``(batch,)``."""


@dataclass(frozen=True)
class AcceptanceTask:
    """A classification task whose right structure is known.

    Attributes:
        name: the task's key in :data:`TASKS` (or in :data:`~nondiff.problems.hybrid.
            acceptance_checks.CHECKS`).
        data: training and test splits (float32 inputs, int64 labels, 2 classes unless
            the task says otherwise).
        model: ``factory() -> nn.Module`` declaring the structure (seed torch first).
        known: one structure that solves the task (trained alone as the reference).
        accepted: ``{path: allowed values}``: a found structure is recovered when
            every path's value is among them (gates: the exact mask; a real: within one
            of the ``(low, high)`` intervals given).
        structure_cost: the task's ``cost(structure)`` for ``HybridTrainer`` or None.
        epochs, lr, batch_size: the training budget every method gets.
        notes: the known structure in words (for tables).
        alternatives: more ``{path: allowed values}`` sets, each also accepted (a
            structure is recovered when it matches :attr:`accepted` or one of them:
            e.g. the two orders of a product's symmetric inputs).
    """

    name: str
    data: Dataset
    model: Callable[[], nn.Module]
    known: dict[str, Any]
    accepted: dict[str, list[Any]]
    structure_cost: Callable[[Mapping[str, Any]], float] | None = None
    epochs: int = 10
    lr: float = 1e-2
    batch_size: int = 64
    notes: str = ""
    alternatives: tuple[dict[str, list[Any]], ...] = ()

    def recovered(self, structure: Mapping[str, Any]) -> bool:
        """Whether ``structure`` (decoded, as ``trainer.recommended()`` gives it) is
        the known one: each path's value among :attr:`accepted` (or among those of one
        of :attr:`alternatives`)."""
        missing = set(self.accepted) - set(structure)
        if missing:
            raise ValueError(f"structure {dict(structure)!r} lacks the paths {sorted(missing)}"
                             f" of task {self.name!r}; pass a structure of its model")
        return any(_matches(structure, accepted)
                   for accepted in (self.accepted, *self.alternatives))


def _matches(structure: Mapping[str, Any], accepted: Mapping[str, list[Any]]) -> bool:
    for path, allowed in accepted.items():
        value = structure[path]
        if isinstance(allowed[0], tuple):  # a real: intervals (low, high)
            number = np.asarray(value, dtype=np.float64)
            if number.size != 1 or not all(isinstance(a, tuple) and len(a) == 2 and
                                           a[0] <= a[1] for a in allowed):
                raise ValueError(f"path {path!r} is accepted within intervals {allowed!r}, "
                                 f"which need one real and (low, high) pairs, got "
                                 f"{value!r}; give each interval as (low, high)")
            if not any(low <= float(number.reshape(-1)[0]) <= high for low, high in allowed):
                return False
        elif (isinstance(value, np.ndarray) and value.dtype == bool) or (
                isinstance(allowed[0], np.ndarray)):
            if not any(np.array_equal(np.asarray(value, dtype=bool), np.asarray(a))
                       for a in allowed):
                return False
        elif isinstance(value, (list, tuple, np.ndarray)):  # a Program's tokens
            if [str(v) for v in value] not in [[str(v) for v in a] for a in allowed]:
                return False
        elif value not in allowed:
            return False
    return True


def _dataset(name: str, x: torch.Tensor, y: torch.Tensor, n_train: int) -> Dataset:
    return Dataset(name, 2, x[:n_train].contiguous(), y[:n_train].contiguous(),
                   x[n_train:].contiguous(), y[n_train:].contiguous(), (x.shape[1],))


def _check_sizes(n_train: int, n_test: int) -> None:
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _sign_product(seed: int, n_train: int, n_test: int, features: int,
                  pair: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``features`` standard normal inputs from ``seed``, the label ``1[x_a x_b > 0]``
    for ``(a, b) = pair`` (an XOR of two signs), and the gate mask of the pair."""
    _check_sizes(n_train, n_test)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, features, generator=g)
    y = (x[:, pair[0]] * x[:, pair[1]] > 0).long()
    return x, y, np.isin(np.arange(features), pair)


# ----- relevant inputs ----------------------------------------------------------------
RELEVANT = (1, 4, 9)
"""The inputs that matter in ``"relevant-inputs"``."""


class GatedMLP(nn.Module):
    """``Gates(features)`` on the inputs, then ``Linear -> ReLU -> Linear``."""

    def __init__(self, features: int = 12, hidden: int = 32, classes: int = 2) -> None:
        super().__init__()
        self.gates = Gates(features)
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.gates(x))


def relevant_inputs(seed: int = 0, n_train: int = 2000, n_test: int = 2000,
                    features: int = 12) -> AcceptanceTask:
    """The ``"relevant-inputs"`` task: 3 of ``features`` inputs decide the label."""
    _check_sizes(n_train, n_test)
    if isinstance(features, bool) or not isinstance(features, int) or features <= max(RELEVANT):
        raise ValueError(f"features must be an integer > {max(RELEVANT)} (the relevant inputs "
                         f"are {RELEVANT}), got {features!r}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, features, generator=g)
    radius = x[:, list(RELEVANT)].square().sum(1)
    y = (radius > float(chi2.median(len(RELEVANT)))).long()
    mask = np.zeros(features, dtype=bool)
    mask[list(RELEVANT)] = True
    return AcceptanceTask(
        "relevant-inputs", _dataset("relevant-inputs", x, y, n_train),
        lambda: GatedMLP(features), {"gates": mask}, {"gates": [mask]},
        structure_cost=_open_gates, notes=f"open gates {list(RELEVANT)} of {features}")


def _open_gates(structure: Mapping[str, Any]) -> float:
    return GATE_COST * float(np.sum(structure["gates"]))


# ----- the needed nonlinearity ---------------------------------------------------------
class ActivationNet(nn.Module):
    """``z_i = act_i(a_i x_i + b_i)`` per input (learned ``a``, ``b``; each ``act_i`` a
    ``Choice`` of :data:`ACTIVATIONS`), then ``Linear(features, classes)``: an additive
    model whose shape functions are the chosen activations."""

    def __init__(self, features: int = 4, classes: int = 2) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(features))
        self.shift = nn.Parameter(torch.zeros(features))
        self.acts = nn.ModuleList(Choice({name: make() for name, make in ACTIVATIONS.items()})
                                  for _ in range(features))
        self.out = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x * self.scale + self.shift
        return self.out(torch.cat([act(h[:, i:i + 1]) for i, act in enumerate(self.acts)], 1))


def needed_nonlinearity(seed: int = 0, n_train: int = 2000, n_test: int = 2000
                        ) -> AcceptanceTask:
    """The ``"nonlinearity"`` task: the circle label ``1[x_0^2 + x_1^2 > 2 ln 2]``."""
    _check_sizes(n_train, n_test)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, 4, generator=g)
    y = (x[:, :2].square().sum(1) > float(chi2.median(2))).long()
    names = list(ACTIVATIONS)
    return AcceptanceTask(
        "nonlinearity", _dataset("nonlinearity", x, y, n_train), ActivationNet,
        {f"acts.{i}": "square" for i in range(4)},
        {"acts.0": ["square"], "acts.1": ["square"], "acts.2": names, "acts.3": names},
        lr=3e-2, notes="square on inputs 0 and 1 (inputs 2, 3: any)")


# ----- a small op graph ---------------------------------------------------------------
class OpGraph(nn.Module):
    """``t = op3(op1(x_0, x_1), op2(x_2, x_3))``, then ``Linear(1, hidden) -> Tanh ->
    Linear(hidden, classes)``; each op is a ``Choice`` among :data:`OPS`."""

    def __init__(self, hidden: int = 16, classes: int = 2) -> None:
        super().__init__()
        self.op1, self.op2, self.op3 = (Choice(dict(OPS)) for _ in range(3))
        self.head = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.stack([self.op1(x[:, 0:2]), self.op2(x[:, 2:4])], 1)
        return self.head(self.op3(h).unsqueeze(1))


def op_graph(seed: int = 0, n_train: int = 2000, n_test: int = 2000) -> AcceptanceTask:
    """The ``"op-graph"`` task: the label ``1[x_0 x_1 + (x_2 - x_3) > 0]``."""
    _check_sizes(n_train, n_test)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, 4, generator=g)
    y = (x[:, 0] * x[:, 1] + (x[:, 2] - x[:, 3]) > 0).long()
    known = {"op1": "mul", "op2": "sub", "op3": "add"}
    return AcceptanceTask("op-graph", _dataset("op-graph", x, y, n_train), OpGraph, known,
                          {k: [v] for k, v in known.items()}, notes="(mul, sub, add)")


# ----- inputs and activation together (the case of issue 17) ----------------------------
PAIR = (2, 5)
"""The inputs that matter in ``"inputs-and-activation"``."""


class GatedActivationMLP(nn.Module):
    """``Gates(features)`` on the inputs, ``Linear(features, hidden)``, a ``Choice`` of
    identity, ReLU and tanh, ``Linear(hidden, classes)``."""

    def __init__(self, features: int = 8, hidden: int = 16, classes: int = 2) -> None:
        super().__init__()
        self.gates = Gates(features)
        self.inp = nn.Linear(features, hidden)
        self.act = Choice({"identity": nn.Identity(), "relu": nn.ReLU(), "tanh": nn.Tanh()})
        self.out = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.inp(self.gates(x))))


def inputs_and_activation(seed: int = 0, n_train: int = 2000, n_test: int = 2000
                          ) -> AcceptanceTask:
    """The ``"inputs-and-activation"`` task: ``1[x_2 x_5 > 0]`` among 8 inputs."""
    x, y, mask = _sign_product(seed, n_train, n_test, 8, PAIR)
    return AcceptanceTask(
        "inputs-and-activation", _dataset("inputs-and-activation", x, y, n_train),
        GatedActivationMLP, {"gates": mask, "act": "relu"},
        {"gates": [mask], "act": ["relu", "tanh"]}, structure_cost=_open_gates,
        notes=f"open gates {list(PAIR)} of 8 and a nonlinear activation")


# ----- how many frequencies (an integer structure) --------------------------------------
FREQUENCY_COST = 0.02
"""Structure cost of one frequency of ``"frequencies"`` (its sine and cosine features)."""
FREQUENCY = 3
"""The frequency of ``"frequencies"``: the label is ``1[sin(FREQUENCY pi x) > 0]``."""


class FourierNet(nn.Module):
    """Fourier features ``sin(j pi x), cos(j pi x)`` for ``j = 1 .. n_freq`` of a scalar
    input, ``n_freq`` an :class:`~nondiff.hybrid.structure.IntParam` in ``[1,
    max_freq]``, then ``Linear(2 max_freq, classes)`` (the features above ``n_freq`` are
    zero). Reads ``n_freq.value`` in ``forward``, so a batch of candidates runs one
    forward pass each."""

    def __init__(self, max_freq: int = 8, classes: int = 2) -> None:
        super().__init__()
        self.n_freq = IntParam(1, max_freq)
        self.register_buffer("order", torch.arange(1, max_freq + 1), persistent=False)
        self.head = nn.Linear(2 * max_freq, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angle = torch.pi * x[:, :1] * self.order
        keep = (self.order <= self.n_freq.value).to(x.dtype)
        return self.head(torch.cat([torch.sin(angle) * keep, torch.cos(angle) * keep], 1))


def frequencies(seed: int = 0, n_train: int = 2000, n_test: int = 2000) -> AcceptanceTask:
    """The ``"frequencies"`` task: ``1[sin(3 pi x) > 0]`` for ``x`` uniform on ``[-1, 1]``."""
    _check_sizes(n_train, n_test)
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.rand(n_train + n_test, 1, generator=g) - 1
    y = (torch.sin(FREQUENCY * torch.pi * x[:, 0]) > 0).long()
    return AcceptanceTask(
        "frequencies", _dataset("frequencies", x, y, n_train), FourierNet,
        {"n_freq": FREQUENCY}, {"n_freq": [FREQUENCY]}, structure_cost=_frequency_cost,
        lr=3e-2, notes=f"n_freq = {FREQUENCY} of 1..8 (cost per frequency)")


def _frequency_cost(structure: Mapping[str, Any]) -> float:
    return FREQUENCY_COST * float(structure["n_freq"])


# ----- which input feeds which sub-module (routing) -------------------------------------
ROUTES = {"left": "x2", "right": "x6", "curve": "x4"}
"""The inputs that ``"routing"`` needs in each slot of :class:`RoutedNet`."""
ROUTING_MEDIAN = 0.6228
"""The median of ``x_2 x_6 + x_4^2`` for standard normal inputs (balanced classes)."""


class _Column(nn.Module):
    """Input column ``i`` of a ``(batch, features)`` tensor, as ``(batch, 1)``."""

    def __init__(self, i: int) -> None:
        super().__init__()
        self.i = i

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.i:self.i + 1]

    def extra_repr(self) -> str:
        return f"i={self.i}"


class RoutedNet(nn.Module):
    """Three ``Choice`` slots route inputs to two sub-modules: a product unit
    ``x_left * x_right`` and a learned one-dimensional curve ``Linear(1, hidden) -> Tanh
    -> Linear(hidden, 1)`` of ``x_curve``; ``Linear(2, classes)`` on the pair. Each slot
    chooses among the ``features`` inputs (``"x0"``, ``"x1"``, ...)."""

    def __init__(self, features: int = 8, hidden: int = 16, classes: int = 2) -> None:
        super().__init__()
        self.left, self.right, self.curve = (
            Choice({f"x{i}": _Column(i) for i in range(features)}) for _ in range(3))
        self.shape = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.head = nn.Linear(2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.left(x) * self.right(x),
                                    self.shape(self.curve(x))], 1))


def routing(seed: int = 0, n_train: int = 2000, n_test: int = 2000) -> AcceptanceTask:
    """The ``"routing"`` task: the label ``1[x_2 x_6 + x_4^2 > median]`` of 8 inputs."""
    _check_sizes(n_train, n_test)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, 8, generator=g)
    y = (x[:, 2] * x[:, 6] + x[:, 4].square() > ROUTING_MEDIAN).long()
    swapped = {"left": ["x6"], "right": ["x2"], "curve": ["x4"]}
    return AcceptanceTask(
        "routing", _dataset("routing", x, y, n_train), RoutedNet, dict(ROUTES),
        {k: [v] for k, v in ROUTES.items()}, alternatives=(swapped,),
        notes="x2, x6 into the product (either order), x4 into the curve")


# ----- a short program of list ops ------------------------------------------------------
def _sort(x: torch.Tensor) -> torch.Tensor:
    return x.sort(dim=1).values


LIST_OPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "abs": torch.abs,
    "sort": _sort,
    "relu": torch.relu,
    "neg": torch.neg,
    "cumsum": lambda x: x.cumsum(1),
}
"""The DSL of :class:`ProgramNet`: functions of a ``(batch, items)`` tensor."""
PROGRAM_RANK = 6
"""``"program"`` labels by the order statistic ``sort(|x|)[:, PROGRAM_RANK]`` (the second
largest of 8 magnitudes)."""
PROGRAM_THRESHOLD = 1.27834
"""The median of the second largest of 8 standard normal magnitudes: ``m`` with
``p^8 + 8 p^7 (1 - p) = 1/2``, ``p = 2 Phi(m) - 1`` (balanced classes)."""


class ProgramNet(nn.Module):
    """A :class:`~nondiff.hybrid.structure.Program` of ``length`` tokens of
    :data:`LIST_OPS` on the ``items`` inputs, ``BatchNorm1d(items, affine=False)``, then
    ``Linear(items, classes)``: the program makes the features, a linear classifier
    reads them.

    The norm is what lets one head be shared by 216 programs, as in DARTS's searched
    ops (a batch norm without affine parameters after each): the programs' outputs
    differ in scale and offset by orders of magnitude (``cumsum`` sums 8 items, ``abs``
    moves the mean), so a head trained under many of them fits none. Searched with the
    plain head, the 13 accepted programs ranked anywhere from 9th to 195th of 216 under
    weights trained on uniformly drawn programs, and the suite recovered 13 of 65
    seeds; with the norm (each candidate scored with its own batch statistics:
    :mod:`nondiff.hybrid.candidate_norms`) 10 or 11 of them rank in the first 20, and
    REINFORCE, CGA, PGPE and SNES recover 5 of 5 seeds."""

    def __init__(self, items: int = 8, length: int = 3, classes: int = 2) -> None:
        super().__init__()
        self.program = Program(LIST_OPS, length)
        self.norm = nn.BatchNorm1d(items, affine=False)
        self.head = nn.Linear(items, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.program(x)))


def solving_programs(length: int = 3, items: int = 8, rank: int = PROGRAM_RANK
                     ) -> list[list[str]]:
    """Every program of ``length`` tokens of :data:`LIST_OPS` whose output contains the
    feature ``sort(|x|)[:, rank]`` linearly (least squares on the output and a constant,
    on 256 probe rows in float64, residual below ``1e-8`` of the feature's norm): the
    linear head can then read the label's order statistic exactly."""
    probe = torch.randn(256, items, generator=torch.Generator().manual_seed(12345),
                        dtype=torch.float64)
    target = _sort(probe.abs())[:, rank:rank + 1]
    found = []
    for program in itertools.product(LIST_OPS, repeat=length):
        z = probe
        for token in program:
            z = LIST_OPS[token](z)
        design = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1)
        fit = design @ torch.linalg.lstsq(design, target).solution
        if float((fit - target).norm()) < 1e-8 * float(target.norm()):
            found.append(list(program))
    return found


def program_task(seed: int = 0, n_train: int = 2000, n_test: int = 2000) -> AcceptanceTask:
    """The ``"program"`` task: ``1[sort(|x|)[:, 6] > m]`` of 8 standard normal inputs."""
    _check_sizes(n_train, n_test)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, 8, generator=g)
    y = (_sort(x.abs())[:, PROGRAM_RANK] > PROGRAM_THRESHOLD).long()
    return AcceptanceTask(
        "program", _dataset("program", x, y, n_train), ProgramNet,
        {"program": ["abs", "sort", "identity"]}, {"program": solving_programs()}, lr=5e-2,
        notes="abs then sort (any of the programs whose features contain sort(|x|))")


# ----- a choice between modules with their own weights --------------------------------
HEAD_INPUTS = (0, 3)
"""The inputs whose product's sign is the label of ``"head-choice"``."""


class GatedHeads(nn.Module):
    """``Gates(features)`` on the inputs, then a ``Choice`` of two heads with their own
    weights: ``"linear"`` (``Linear(features, classes)``) or ``"mlp"`` (``Linear ->
    ReLU -> Linear``)."""

    def __init__(self, features: int = 6, hidden: int = 16, classes: int = 2) -> None:
        super().__init__()
        self.gates = Gates(features)
        self.head = Choice({"linear": nn.Linear(features, classes),
                            "mlp": nn.Sequential(nn.Linear(features, hidden), nn.ReLU(),
                                                 nn.Linear(hidden, classes))})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gates(x))


def head_choice(seed: int = 0, n_train: int = 2000, n_test: int = 2000) -> AcceptanceTask:
    """The ``"head-choice"`` task: ``1[x_0 x_3 > 0]`` of 6 standard normal inputs."""
    x, y, mask = _sign_product(seed, n_train, n_test, 6, HEAD_INPUTS)
    return AcceptanceTask(
        "head-choice", _dataset("head-choice", x, y, n_train), GatedHeads,
        {"gates": mask, "head": "mlp"}, {"gates": [mask], "head": ["mlp"]},
        structure_cost=_open_gates,
        notes=f"open gates {list(HEAD_INPUTS)} of 6 and the MLP head")


# ----- issue 17's case on more inputs -------------------------------------------------
SPHERE_INPUTS = (5, 11, 17)
"""The inputs whose squared radius decides ``"many-inputs"``'s label (of 20)."""


def many_inputs(seed: int = 0, n_train: int = 2000, n_test: int = 2000) -> AcceptanceTask:
    """The ``"many-inputs"`` task: ``1[x_5^2 + x_11^2 + x_17^2 > m]`` among 20 inputs."""
    _check_sizes(n_train, n_test)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, 20, generator=g)
    y = (x[:, list(SPHERE_INPUTS)].square().sum(1) > float(chi2.median(3))).long()
    mask = np.zeros(20, dtype=bool)
    mask[list(SPHERE_INPUTS)] = True
    return AcceptanceTask(
        "many-inputs", _dataset("many-inputs", x, y, n_train),
        lambda: GatedActivationMLP(20, 32), {"gates": mask, "act": "relu"},
        {"gates": [mask], "act": ["relu"]}, structure_cost=_open_gates,
        notes=f"open gates {list(SPHERE_INPUTS)} of 20 and ReLU")


# ----- a product, a fold and a linear term of 4 of 24 inputs --------------------------
MIXED_INPUTS = (2, 9, 14, 21)
"""The inputs of ``"mixed-inputs"``'s label (of 24): ``x_2 x_9 + |x_14| - x_21 / 2``."""
MIXED_MEDIAN = 0.7561
"""The median of ``x_2 x_9 + |x_14| - x_21 / 2`` for standard normal inputs (balanced
classes; 4 million draws)."""


def mixed_inputs(seed: int = 0, n_train: int = 2000, n_test: int = 2000) -> AcceptanceTask:
    """The ``"mixed-inputs"`` task: ``1[x_2 x_9 + |x_14| - x_21 / 2 > m]`` among 24
    inputs."""
    _check_sizes(n_train, n_test)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, 24, generator=g)
    a, b, c, d = MIXED_INPUTS
    y = (x[:, a] * x[:, b] + x[:, c].abs() - 0.5 * x[:, d] > MIXED_MEDIAN).long()
    mask = np.zeros(24, dtype=bool)
    mask[list(MIXED_INPUTS)] = True
    return AcceptanceTask(
        "mixed-inputs", _dataset("mixed-inputs", x, y, n_train),
        lambda: GatedActivationMLP(24, 32), {"gates": mask, "act": "relu"},
        {"gates": [mask], "act": ["relu", "tanh"]}, structure_cost=_open_gates,
        notes=f"open gates {list(MIXED_INPUTS)} of 24 and a nonlinear activation")


# ----- two products of two among 20 inputs --------------------------------------------
TWO_PAIRS = ((1, 7), (13, 18))
"""The two pairs of ``"two-pairs"``'s label (of 20): ``x_1 x_7 + x_13 x_18``."""


def two_pairs(seed: int = 0, n_train: int = 2000, n_test: int = 2000) -> AcceptanceTask:
    """The ``"two-pairs"`` task: ``1[x_1 x_7 + x_13 x_18 > 0]`` among 20 inputs (the
    median is 0 by symmetry)."""
    _check_sizes(n_train, n_test)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, 20, generator=g)
    (a, b), (c, d) = TWO_PAIRS
    y = (x[:, a] * x[:, b] + x[:, c] * x[:, d] > 0).long()
    mask = np.zeros(20, dtype=bool)
    mask[[a, b, c, d]] = True
    return AcceptanceTask(
        "two-pairs", _dataset("two-pairs", x, y, n_train),
        lambda: GatedActivationMLP(20, 32), {"gates": mask, "act": "relu"},
        {"gates": [mask], "act": ["relu", "tanh"]}, structure_cost=_open_gates,
        notes=f"open gates {[a, b, c, d]} of 20 and a nonlinear activation")


TASKS: dict[str, Callable[..., AcceptanceTask]] = {
    "relevant-inputs": relevant_inputs,
    "nonlinearity": needed_nonlinearity,
    "op-graph": op_graph,
    "inputs-and-activation": inputs_and_activation,
    "frequencies": frequencies,
    "routing": routing,
    "program": program_task,
    "head-choice": head_choice,
    "many-inputs": many_inputs,
    "mixed-inputs": mixed_inputs,
    "two-pairs": two_pairs,
}
"""The acceptance tasks by name: ``name -> factory(seed, n_train, n_test)``."""


def make_task(name: str, seed: int = 0, **kwargs: Any) -> AcceptanceTask:
    """The task ``name`` of :data:`TASKS` with data from ``seed``."""
    if name not in TASKS:
        raise ValueError(f"unknown acceptance task {name!r}; choose from {sorted(TASKS)}")
    return TASKS[name](seed, **kwargs)
