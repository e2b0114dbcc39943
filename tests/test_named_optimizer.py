"""The structure optimizer HybridTrainer builds by name: a population a bounded search
can afford generations of, and the GA's copies (nondiff.hybrid.named_optimizer)."""

import pytest
import torch
from nondiff.hybrid.named_optimizer import (
    STRUCTURE_POPSIZE,
    named_structure_optimizer,
    structure_popsize,
)
from nondiff.hybrid.structure import Choice, Gates
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.optim import registry
from nondiff.optim.base import default_popsize
from nondiff.optim.spaces import Binary, Categorical, Product
from torch import nn

SPACE = Product(gates=Binary(12), op=Categorical(["relu", "tanh", "none"]))


@pytest.mark.parametrize("name", ["cem", "ipop-cem", "bipop-cem"])
def test_cross_entropy_method_gets_the_structure_popsize(name):
    assert registry.create(name, SPACE, seed=0).popsize > STRUCTURE_POPSIZE
    assert named_structure_optimizer(name, SPACE, seed=0).popsize == STRUCTURE_POPSIZE


@pytest.mark.parametrize("name", ["cmaes", "ga", "snes", "reinforce", "cga",
                                  "one-plus-lambda"])
def test_other_defaults_are_the_registrys(name):
    assert named_structure_optimizer(name, SPACE, seed=0).popsize == \
        registry.create(name, SPACE, seed=0).popsize


def test_a_given_popsize_wins():
    assert named_structure_optimizer("cem", SPACE, seed=0, options={"popsize": 64}
                                     ).popsize == 64
    assert named_structure_optimizer("cmaes", SPACE, seed=0, options={"popsize": 30}
                                     ).popsize == 30


def test_the_cap_follows_the_searched_dimension():
    big = Product(gates=Binary(2000))  # 4 + 3 ln 2000 = 26 > 20
    assert structure_popsize(registry.create("cem", big, seed=0)) == default_popsize(2000)
    assert named_structure_optimizer("cem", big, seed=0).popsize == default_popsize(2000)
    wide = Product(c=Categorical(range(1000)))  # one entry, relaxed into 1000 scores
    cem = registry.create("cem", wide, seed=0)
    assert (cem.dim, cem.inner.dim) == (1, 1000)
    assert structure_popsize(cem) == default_popsize(1000) > STRUCTURE_POPSIZE
    assert named_structure_optimizer("cem", wide, seed=0).popsize == default_popsize(1000)


@pytest.mark.parametrize("gates", [15, 300, 301, 1000])
def test_every_registry_name_builds_on_large_spaces(gates):
    """4 + 3 ln d is odd for some d >= 290, and OpenAI-ES and PGPE round their population
    up to an even one: the cap leaves one more, never refuses a name the registry
    builds."""
    space = Product(gates=Binary(gates))
    for name in registry.names():
        default = registry.create(name, space, seed=0).popsize
        built = named_structure_optimizer(name, space, seed=0).popsize
        assert built == default or (default > built >= STRUCTURE_POPSIZE), name


def test_ga_built_by_name_makes_copies():
    assert named_structure_optimizer("ga", SPACE, seed=0).hparams.shift is False
    assert named_structure_optimizer("ga", SPACE, seed=0, options={"shift": True}
                                     ).hparams.shift is True


def _generations(**options):
    torch.manual_seed(0)
    model = nn.Sequential(Gates(4), nn.Linear(4, 8), Choice(nn.ReLU(), nn.Tanh()),
                          nn.Linear(8, 2))
    trainer = HybridTrainer(model, "cem", seed=0, progress=False, **options)
    x = torch.randn(320, 4)
    batches = [(x[i:i + 32], (x[i:i + 32, 0] > 0).long()) for i in range(0, 320, 32)]
    history = trainer.fit(batches, epochs=10)
    return trainer.structure_optimizer.popsize, sum(m.get("searched", 0) for m in history)


def test_trainer_searches_with_cem_for_more_generations():
    """Under the default budget (search_compute=1: 100 steps of 32 rows, the last 30 %
    final; 0.2 of the search steps' budget set aside for the late selection, so 0.8 x 70
    x 32 = 1792 rows) CEM's registry population (10 d = 50: 1600 rows a generation)
    affords one generation; the capped one (20: 640 rows) two."""
    default = registry.create("cem", Product(g=Binary(4), c=Categorical([0, 1])),
                              seed=0).popsize
    assert _generations(structure_options={"popsize": default}) == (default, 1)
    assert _generations() == (STRUCTURE_POPSIZE, 2)
