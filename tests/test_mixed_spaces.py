"""minimize() over typed spaces: decoded objectives and results, the mixed benchmark."""

from __future__ import annotations

import numpy as np
import pytest
from nondiff.optim import minimize, registry
from nondiff.optim.spaces import Binary, Categorical, Integer, Product, Real

from nondiff import problems


def test_mixed_sphere_optimum_and_batching():
    p = problems.get("mixed-sphere", dim=3, instance=2)
    assert float(p(p.x_opt)) == p.f_opt == 0.0
    rows = p.space.sample(np.random.default_rng(0), 16)
    assert np.all(p(rows) > 0)
    assert np.allclose(p(rows), [float(p(row)) for row in rows])
    assert p.space.decode(p.x_opt)["c"] == p.target["c"]


def test_pointwise_objective_receives_decoded_values():
    space = Product(lr=Real(1e-4, 1.0, log=True), depth=Integer(1, 8),
                    op=Categorical(["conv", "pool", "skip"]), mask=Binary(4))
    seen = []

    def loss(value):
        seen.append(value)
        return (abs(np.log10(value["lr"]) + 2) + abs(value["depth"] - 5)
                + (value["op"] != "pool") + float(np.sum(~value["mask"])))

    res = minimize(loss, space, optimizer="cmaes", budget=1500, seed=1)
    assert isinstance(seen[0], dict) and set(seen[0]) == {"lr", "depth", "op", "mask"}
    assert isinstance(seen[0]["depth"], int) and seen[0]["op"] in ("conv", "pool", "skip")
    assert res.x["op"] == "pool" and res.x["depth"] == 5 and res.x["mask"].all()
    assert res.x["lr"] == pytest.approx(1e-2, rel=0.05)
    assert res.feasible


def test_constraints_receive_decoded_values_and_may_return_several():
    space = Product(depth=Integer(1, 8), op=Categorical(["conv", "pool", "skip"]))
    seen = []

    def constraints(value):  # depth <= 3 and op != "skip": two values per point
        seen.append(value)
        return [value["depth"] - 3, float(value["op"] == "skip")]

    res = minimize(lambda v: -v["depth"], space, optimizer="cmaes", budget=600, seed=0,
                   constraints=constraints)
    assert isinstance(seen[0], dict) and set(seen[0]) == {"depth", "op"}
    assert res.feasible and res.x["depth"] == 3 and res.x["op"] != "skip"


def test_cmaes_solves_the_mixed_benchmark():
    p = problems.get("mixed-sphere", dim=3, instance=1)
    res = minimize(p, p.space, optimizer="bipop-cmaes", budget=8000, vectorized=True, seed=3,
                   target=1e-6)
    assert res.f <= 1e-6
    assert res.x["c"] == p.target["c"] and np.array_equal(res.x["k"], p.target["k"])


def test_real_only_optimizer_names_alternatives_for_a_discrete_space():
    with pytest.raises(ValueError, match="cmaes") as error:  # a discrete-only one: no reals
        minimize(lambda v: 0.0, Product(x=Real(0, 1), mask=Binary(3)), optimizer="ga",
                 budget=100)
    assert "ga searches binary/categorical/integer/permutation spaces" in str(error.value)
    with pytest.raises(ValueError, match=r"snes searches real spaces.*"
                                         r"registry.create\('snes', space\)"):
        registry.get("snes")(Product(mask=Binary(3)))  # by name it searches a relaxation


def test_mixed_sphere_rejects_entries_outside_the_space():
    p = problems.get("mixed-sphere", dim=2)
    bad = p.x_opt.copy()
    bad[4] = 9.0  # a category index past the five categories
    with pytest.raises(ValueError, match="mixed-sphere"):
        p(bad)
