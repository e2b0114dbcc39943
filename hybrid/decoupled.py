"""Decoupled stacks of user modules: DNI, cDNI, local losses, or plain backprop (one flag).

``Decoupled([block1, block2, ...], signal=...)`` trains unchanged ``nn.Module`` blocks,
each with its own optimizer, each updating as soon as its own forward pass is done
from the signal at its output:

- ``"synthetic"`` (DNI): a :class:`~nondiff.hybrid.synthetic.SyntheticGradient` predicts
  ``dL/dh`` from ``h``; it learns from the gradient that the block above sends back
  (the true one under the loss, a bootstrapped one below that).
- ``"synthetic-conditioned"`` (cDNI): the same, also given the one-hot label.
- ``"local"`` (DGL): an :class:`~nondiff.hybrid.synthetic.AuxiliaryHead` classifier with its own
  cross-entropy at each block; nothing travels backwards.
- ``"backprop"``: ordinary end-to-end backprop over the same blocks and optimizers, so
  a comparison is one flag.

Hierarchy: a block may be a :class:`Group` (layers trained by backprop inside,
decoupled at its edges; groups nest) or another :class:`Decoupled` stack, whose last
block then trains from the outer signal at its output and whose first block hands the
outer stack the gradient at its input. ``staleness=k`` makes each synthesizer learn
from targets ``k`` steps late, exactly as the pipelined multi-process engine
(:mod:`nondiff.hybrid.parallel`) does in synchronous mode, so the two agree bit for bit.

Sources: Jaderberg et al. 2017 (arXiv:1608.05343), Czarnecki et al. 2017, Belilovsky
et al. 2020; see :mod:`nondiff.hybrid.synthetic`.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.decoupled import Decoupled, Group
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> blocks = [Group([nn.Linear(4, 16), nn.ReLU()]), Group([nn.Linear(16, 16), nn.ReLU()]),
    ...           nn.Linear(16, 3)]
    >>> model = Decoupled(blocks, signal="synthetic-conditioned", seed=0)
    >>> x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    >>> first = model.train_step(x, y)
    >>> last = [model.train_step(x, y) for _ in range(100)][-1]
    >>> last < first
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from nondiff.hybrid.batches import as_batches
from nondiff.hybrid.devices import device_of, placed_device, to_device
from nondiff.hybrid.nonfinite import NonFiniteError, check_finite, check_policy, epoch_mean
from nondiff.hybrid.stage import LossTop, Stage
from nondiff.hybrid.synthetic import AuxiliaryHead, SyntheticGradient
from nondiff.optim.checkpoint import seal, verify
from torch import nn

__all__ = ["SIGNALS", "Decoupled", "Group", "default_optimizer"]

SIGNALS: tuple[str, ...] = ("backprop", "synthetic", "synthetic-conditioned", "local")
"""The training signals a block can receive at its output."""

CHECKPOINT_VERSION = 1


def default_optimizer(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The default optimizer factory: ``Adam(params, lr=1e-3)``, fused where it can be.

    PyTorch's default Adam on the CPU loops over the tensors in Python; the fused
    kernel does the same update in one call (Adam 1.2 vs 3.3 ms, a whole step 3.2 vs
    5.1 ms for eight 128-wide layers at batch 64, one thread). A module-level function,
    so that stacks pickle into worker processes.

    Example:
        >>> from torch import nn
        >>> default_optimizer(list(nn.Linear(3, 2).parameters())).defaults["fused"]
        True
    """
    params = list(params)
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=1e-3, fused=fused or None)

OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
Callback = Callable[[dict[str, float], "Decoupled"], Any]


def _to_block(x: torch.Tensor, block: nn.Module) -> torch.Tensor:
    """``x`` on ``block``'s device (blocks of one stack may sit on different devices)."""
    where = placed_device(block)
    return x if where is None else to_device(x, where)


class Group(nn.Sequential):
    """Layers trained by ordinary backprop inside, one decoupled block at the edges.

    Groups nest: ``Group([Group([a, b]), c])`` is one block ``c(b(a(x)))``.

    Example:
        >>> from torch import nn
        >>> len(Group([Group([nn.Linear(2, 3), nn.ReLU()]), nn.Linear(3, 1)]))
        2
    """

    def __init__(self, modules: Iterable[nn.Module]) -> None:
        modules = list(modules)
        bad = [m for m in modules if not isinstance(m, nn.Module)]
        if not modules or bad:
            raise ValueError(f"Group needs a non-empty list of nn.Modules, got {modules!r}")
        super().__init__(*modules)


class Decoupled(nn.Module):
    """A stack of user blocks trained with decoupled (or ordinary) backprop.

    Runs on the device of the blocks' parameters (move them before the first step;
    synthesizers and heads are built there); batches are moved there. Blocks may sit
    on different devices (``blocks[1].to("cuda:1")``): each block's input, its
    synthesizer or head and its targets follow it, and :func:`~nondiff.hybrid.parallel.fit_parallel`
    runs each top-level block on its own device.

    Args:
        blocks: ``nn.Module`` blocks applied in order (a :class:`Group` or a nested
            :class:`Decoupled` counts as one block). The last block outputs the logits
            (or whatever ``loss`` takes).
        signal: one of :data:`SIGNALS`.
        optimizer: factory from a parameter list to a ``torch.optim`` optimizer, one
            per block (default Adam, lr 1e-3).
        loss: ``loss(output, y)`` → scalar batch mean (default cross-entropy).
        num_classes: label count for cDNI contexts and local heads (default: the last
            block's output width).
        synthesizer: keyword arguments of :class:`SyntheticGradient` (``hidden``,
            ``layers``, ``conv``), or a factory ``(shape, context_dim) -> module``.
        synth_optimizer: optimizer factory for synthesizers and heads (default:
            ``optimizer``).
        head_hidden: hidden width of the local auxiliary heads (0: linear heads).
        staleness: synthesizers learn from targets this many steps late (0: as soon as
            the block above has computed them).
        seed: seeds the initialisation of synthesizers and heads.
        on_nonfinite: what an update does when its loss (or synthetic gradient, or a
            synthesizer's regression loss) is NaN or infinite: ``"raise"`` a
            :class:`~nondiff.hybrid.nonfinite.NonFiniteError` naming the step, epoch and
            block, before the weights change (default); ``"skip"`` the update and count
            it in :attr:`skipped_updates`; ``"off"``: no check (no host sync). See
            :mod:`nondiff.hybrid.nonfinite`.
    """

    def __init__(
        self, blocks: Sequence[nn.Module], signal: str = "synthetic",
        optimizer: OptimizerFactory | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        num_classes: int | None = None,
        synthesizer: dict[str, Any] | Callable[..., nn.Module] | None = None,
        synth_optimizer: OptimizerFactory | None = None, head_hidden: int = 128,
        staleness: int = 0, seed: int = 0, on_nonfinite: str = "raise",
    ) -> None:
        super().__init__()
        blocks = list(blocks)
        if not blocks or not all(isinstance(b, nn.Module) for b in blocks):
            raise ValueError(f"blocks must be a non-empty list of nn.Modules, got {blocks!r}")
        if signal not in SIGNALS:
            raise ValueError(f"unknown signal {signal!r}; expected one of {list(SIGNALS)}")
        if not isinstance(staleness, int) or isinstance(staleness, bool) or staleness < 0:
            raise ValueError(f"staleness must be a non-negative integer, got {staleness!r}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if synthesizer is not None and not (callable(synthesizer) or isinstance(synthesizer,
                                                                                  dict)):
            raise ValueError(f"synthesizer must be a dict of options or a factory, "
                             f"got {synthesizer!r}")
        self._on_nonfinite = check_policy(on_nonfinite)
        self.blocks = nn.ModuleList(blocks)
        self.signal, self.staleness, self.seed = signal, staleness, seed
        self.optimizer_factory = optimizer or default_optimizer
        self.synth_factory = synth_optimizer or self.optimizer_factory
        self.loss = loss or nn.functional.cross_entropy
        self.num_classes, self.head_hidden = num_classes, head_hidden
        self.synthesizer_options = synthesizer if synthesizer is not None else {}
        self.synthesizers = nn.ModuleList()
        self.heads = nn.ModuleList()
        self.stages: list[Stage] = []
        self.shapes: list[tuple[int, ...]] = []  # per-example output shape of each block
        self.step_count, self.epoch = 0, 0

    def __getstate__(self) -> dict[str, Any]:
        # Factories (often lambdas) are only used by build(); a built stack pickles without
        # them so that it can travel to worker processes (hybrid.parallel).
        state = dict(self.__dict__)
        if self.built:
            state["optimizer_factory"] = state["synth_factory"] = None
            if callable(state["synthesizer_options"]):
                state["synthesizer_options"] = None
        return state

    @property
    def built(self) -> bool:
        return bool(self.stages)

    @property
    def on_nonfinite(self) -> str:
        """The non-finite policy (``"raise"``, ``"skip"`` or ``"off"``); setting it also
        sets it for every stage and nested stack."""
        return getattr(self, "_on_nonfinite", "raise")  # "raise" for stacks pickled before

    @on_nonfinite.setter
    def on_nonfinite(self, value: str) -> None:
        self._on_nonfinite = check_policy(value)
        for stage in self.stages:
            stage.on_nonfinite = value
            if isinstance(stage.block, Decoupled):
                stage.block.on_nonfinite = value

    @property
    def skipped_updates(self) -> int:
        """Updates left out for a non-finite value under ``on_nonfinite="skip"``: block
        steps and synthesizer steps, this stack's and its nested stacks' (a step of the
        whole stack under ``signal="backprop"`` counts once)."""
        return sum(stage.skipped + (stage.block.skipped_updates
                                    if isinstance(stage.block, Decoupled) else 0)
                   for stage in self.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(_to_block(x, block))
        return x

    def build(self, x: torch.Tensor) -> Decoupled:
        """Create synthesizers, heads and optimizers from a sample batch's shapes."""
        if self.built:
            return self
        x = to_device(x, device_of(self))
        with torch.no_grad():
            h, self.shapes = x, []
            for block in self.blocks:
                h = _to_block(h, block)
                if isinstance(block, Decoupled):
                    block.build(h)
                h = block(h)
                self.shapes.append(tuple(h.shape[1:]))
        num_classes = self.num_classes or int(self.shapes[-1][0])
        self.num_classes = num_classes
        device = device_of(self)  # synthesizers and heads: made on the CPU, moved to the
        # device of their block (blocks may sit on devices of their own)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)
        try:
            for i, block in enumerate(self.blocks):
                top = i == len(self.blocks) - 1
                synth = head = None
                if not top and self.signal in ("synthetic", "synthetic-conditioned"):
                    context = num_classes if self.signal == "synthetic-conditioned" else None
                    if callable(self.synthesizer_options):
                        synth = self.synthesizer_options(self.shapes[i], context)
                    else:
                        synth = SyntheticGradient(self.shapes[i], context,
                                                  **self.synthesizer_options)
                    synth = synth.to(placed_device(block) or device)
                    self.synthesizers.append(synth)
                elif not top and self.signal == "local":
                    head = AuxiliaryHead(self.shapes[i], num_classes,
                                         self.head_hidden).to(placed_device(block) or device)
                    self.heads.append(head)
                nested = isinstance(block, Decoupled)
                self.stages.append(Stage(
                    block, None if nested else self.optimizer_factory(list(block.parameters())),
                    self.signal, num_classes, synth,
                    self.synth_factory(list(synth.parameters())) if synth else None,
                    head, self.synth_factory(list(head.parameters())) if head else None,
                    self.on_nonfinite))
        finally:
            torch.random.set_rng_state(generator_state)
        return self

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        found = []
        for stage in self.stages:
            if isinstance(stage.block, Decoupled):
                found += stage.block._optimizers()
            found += [o for o in (stage.optimizer, stage.synth_optimizer, stage.head_optimizer)
                      if o is not None]
        return found

    def _run(
        self, x: torch.Tensor, y: torch.Tensor, top: Any, input_grad: bool,
        on_output: Callable[[torch.Tensor], None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.build(x)
        step = self.step_count
        if self.signal == "backprop":
            x = x.detach().requires_grad_(input_grad)
            h = self(x)
            if on_output is not None:
                on_output(h.detach())
            objective = top.objective(h, to_device(y, h.device), step)
            if not check_finite(objective, self.on_nonfinite, "loss", step):
                self.stages[-1].skipped += 1
                self.step_count += 1
                return h.detach(), (torch.full_like(x, float("nan")) if input_grad else None)
            optimizers = self._optimizers()
            for opt in optimizers:
                opt.zero_grad()
            objective.backward()
            for opt in optimizers:
                opt.step()
            top.after()
            self.step_count += 1
            return h.detach(), (x.grad if input_grad else None)
        h, first_grad = x, None
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            if stage.wants_target:
                stage.absorb(step - self.staleness - 1)
            wants = input_grad if i == 0 else self.stages[i - 1].wants_target
            try:
                h, grad = stage.run(h, y, top if i == last else stage, step, wants,
                                    on_output if i == last else None)
            except NonFiniteError as error:
                error.block = (i, *error.block)
                raise
            if i == 0:
                first_grad = grad
            elif grad is not None:
                self.stages[i - 1].push_target(step, grad * len(grad))  # per-example target
        self.step_count += 1
        return h, first_grad

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One decoupled (or backprop) update of every block on a batch; returns the loss.

        Runs on the device of the stack's parameters; the batch is moved there."""
        x, y = to_device((x, y), device_of(self))
        top = LossTop(self.loss)
        try:
            self._run(x, y, top, input_grad=False)
        except NonFiniteError as error:
            error.epoch = self.epoch if error.epoch is None else error.epoch
            raise
        return top.value

    def fit(
        self, data: Any, epochs: int, batch_size: int, seed: int = 0,
        callbacks: Iterable[Callback] = (),
    ) -> list[float]:
        """Train ``epochs`` more epochs on ``data.batches(batch_size, seed, epoch)``.

        ``data`` is a :class:`nondiff.problems.learning.Dataset` (or anything with that
        ``batches`` method), or a map-style torch ``Dataset`` of ``(x, y)`` rows such as a
        ``TensorDataset`` (:func:`~nondiff.hybrid.batches.as_batches`). Epochs continue
        from :attr:`epoch`, so fitting 2 + 3 epochs equals fitting 5. Returns the mean
        training loss of each epoch (under ``on_nonfinite="skip"``, of the steps not
        skipped).

        ``callbacks`` are called as ``cb(metrics, model)`` after every step, with
        ``metrics`` the ``step``, ``epoch``, ``loss`` and :meth:`block_losses`; returning
        True stops ``fit`` after that step. The stopped epoch's mean loss so far is the
        last entry returned, and :attr:`epoch` stays at that epoch (it did not finish).

        Raises:
            NonFiniteError: a non-finite loss under ``on_nonfinite="raise"``.
        """
        if not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        callbacks = list(callbacks)
        data = as_batches(data)
        if not hasattr(data, "batches"):
            raise ValueError(f"data must be a nondiff Dataset (or have its batches(batch_size, "
                             f"seed, epoch)) or a torch Dataset of (x, y) rows, got a "
                             f"{type(data).__name__}; e.g. TensorDataset(x, y)")
        history = []
        for _ in range(epochs):
            losses, stopped = [], False
            for x, y in data.batches(batch_size, seed=seed, epoch=self.epoch):
                losses.append(self.train_step(x, y))
                if callbacks:
                    metrics = {"step": float(self.step_count), "epoch": float(self.epoch),
                               "loss": losses[-1], **self.block_losses()}
                    if any(cb(metrics, self) is True for cb in callbacks):
                        stopped = True
                        break
            history.append(epoch_mean(losses, self.on_nonfinite))
            if stopped:
                break
            self.epoch += 1
        return history

    def block_losses(self) -> dict[str, float]:
        """The training signals' own losses at the latest step, per block below the top.

        ``block{i}/synth_loss``: the synthesizer's regression loss on its latest target
        (Eq. (2) of Jaderberg et al. 2017); ``block{i}/local_loss``: the local head's
        cross-entropy (DGL). A nested stack's blocks appear as ``block{i}/block{j}/...``.
        Empty under ``"backprop"`` and before the first target arrives.
        """
        out: dict[str, float] = {}
        for i, stage in enumerate(self.stages):
            if isinstance(stage.block, Decoupled):
                out.update({f"block{i}/{key}": value
                            for key, value in stage.block.block_losses().items()})
            for key in ("synth_loss", "local_loss"):
                value = getattr(stage, key, None)
                if value is not None:
                    out[f"block{i}/{key}"] = float(value)
        return out

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Fraction of ``x`` classified as ``y`` by the stack's output."""
        x = to_device(x, device_of(self))
        out = self(x)
        return (out.argmax(dim=1) == to_device(y, out.device)).float().mean().item()

    # -- checkpoints --------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to resume: modules, synthesizers, heads, optimizers, queues."""
        if not self.built:
            raise ValueError("build the model (a train_step or build(x)) before checkpoint()")
        return seal({
            "version": CHECKPOINT_VERSION,
            "model": self.state_dict(),
            "optimizers": [opt.state_dict() for opt in self._optimizers()],
            "stages": self._stage_states(),
            "counters": self._counters(),
        })

    def _stage_states(self) -> list[Any]:
        return [stage.block._stage_states() if isinstance(stage.block, Decoupled)
                else stage.state() for stage in self.stages]

    def _counters(self) -> list[Any]:
        nested = [s.block._counters() for s in self.stages if isinstance(s.block, Decoupled)]
        return [self.step_count, self.epoch, nested]

    def _load_stage_states(self, states: list[Any], counters: list[Any]) -> None:
        self.step_count, self.epoch = int(counters[0]), int(counters[1])
        nested = iter(counters[2])
        for stage, state in zip(self.stages, states, strict=True):
            if isinstance(stage.block, Decoupled):
                stage.block._load_stage_states(state, next(nested))
            else:
                stage.load_state(state)

    def load_checkpoint(self, state: dict[str, Any], example: torch.Tensor | None = None
                        ) -> None:
        """Restore :meth:`checkpoint` output (build first, or pass an ``example`` batch)."""
        version = state.get("version") if isinstance(state, dict) else None
        if version != CHECKPOINT_VERSION:
            raise ValueError(f"not a Decoupled checkpoint of version {CHECKPOINT_VERSION}: "
                             f"{type(state).__name__} with version {version!r}")
        state = verify(state, "Decoupled checkpoint")  # refuses one altered since it was made
        unknown = set(state) - {"version", "model", "optimizers", "stages", "counters"}
        if unknown:
            raise ValueError(f"unknown checkpoint keys {sorted(unknown)}")
        if not self.built:
            if example is None:
                raise ValueError("load_checkpoint on an unbuilt model needs example=<a batch>")
            self.build(example)
        self.load_state_dict(state["model"])
        optimizers = self._optimizers()
        if len(optimizers) != len(state["optimizers"]):
            raise ValueError(f"checkpoint has {len(state['optimizers'])} optimizers, the model "
                             f"{len(optimizers)}: built with another signal or blocks?")
        for opt, opt_state in zip(optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(opt_state)
        self._load_stage_states(state["stages"], state["counters"])
