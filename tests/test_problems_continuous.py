"""Contract tests for the continuous problems, parametrized over the registry."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nondiff.problems.continuous import FUNCTIONS

from nondiff import problems

EXPECTED = {
    "sphere", "ellipsoid", "rosenbrock", "rastrigin", "ackley", "schwefel", "griewank",
    "levy", "styblinski-tang", "bent-cigar", "discus", "different-powers",
}  # fmt: skip
CONTINUOUS = problems.names("continuous")
VARIANTS = [(0, True), (1, True), (7, True), (2, False)]  # (instance, rotate)
CASES = [
    pytest.param(name, dim, instance, rotate, id=f"{name}-d{dim}-i{instance}-r{int(rotate)}")
    for name in CONTINUOUS
    for dim in (1, 2, 10)
    if dim >= FUNCTIONS[name].min_dim
    for instance, rotate in VARIANTS
]
ST_1D = -39.16616570377141  # 0.5 (x^4 - 16 x^2 + 5 x) at the root of 4 x^3 - 32 x + 5


# Straightforward numpy references of the canonical functions, one point at a time.
def _ref(name: str, z: np.ndarray) -> float:
    d = len(z)
    t = np.arange(d) / max(d - 1, 1)
    if name == "sphere":
        return float(np.sum(z**2))
    if name == "ellipsoid":
        return float(sum(1e6 ** t[i] * z[i] ** 2 for i in range(d)))
    if name == "rosenbrock":
        return float(sum(100 * (z[i + 1] - z[i] ** 2) ** 2 + (z[i] - 1) ** 2 for i in range(d - 1)))
    if name == "rastrigin":
        return float(10 * d + sum(zi**2 - 10 * math.cos(2 * math.pi * zi) for zi in z))
    if name == "ackley":
        a = -20 * math.exp(-0.2 * math.sqrt(np.mean(z**2)))
        return a - math.exp(np.mean(np.cos(2 * math.pi * z))) + 20 + math.e
    if name == "schwefel":
        pen = sum(max(abs(zi) - 500, 0) ** 2 for zi in z)
        return 418.9828872724339 * d - sum(zi * math.sin(math.sqrt(abs(zi))) for zi in z) + pen
    if name == "griewank":
        prod = math.prod(math.cos(z[i] / math.sqrt(i + 1)) for i in range(d))
        return float(np.sum(z**2) / 4000 - prod + 1)
    if name == "levy":
        w = 1 + (z - 1) / 4
        mid = sum(
            (w[i] - 1) ** 2 * (1 + 10 * math.sin(math.pi * w[i] + 1) ** 2) for i in range(d - 1)
        )
        end = (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)
        return math.sin(math.pi * w[0]) ** 2 + mid + end
    if name == "styblinski-tang":
        return float(0.5 * sum(zi**4 - 16 * zi**2 + 5 * zi for zi in z))
    if name == "bent-cigar":
        return float(z[0] ** 2 + 1e6 * np.sum(z[1:] ** 2))
    if name == "discus":
        return float(1e6 * z[0] ** 2 + np.sum(z[1:] ** 2))
    if name == "different-powers":
        return math.sqrt(sum(abs(z[i]) ** (2 + 4 * t[i]) for i in range(d)))
    raise KeyError(name)  # a newly registered function needs a reference here


def _tol(p: problems.Problem) -> float:
    return 1e-9 * max(1.0, abs(p.f_opt))


def _uniform(p: problems.Problem, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return p.lower + (p.upper - p.lower) * rng.random((n, p.dim))


def test_registry_lists_all_continuous_names() -> None:
    assert EXPECTED <= set(problems.names())
    assert EXPECTED <= set(CONTINUOUS)
    assert problems.names() == sorted(problems.names())
    assert set(FUNCTIONS) <= set(CONTINUOUS)


@pytest.mark.parametrize(("name", "dim", "instance", "rotate"), CASES)
def test_optimum_is_reproduced_and_not_undercut(
    name: str, dim: int, instance: int, rotate: bool
) -> None:
    p = problems.get(name, dim=dim, instance=instance, rotate=rotate)
    assert isinstance(p, problems.Problem)
    assert p.x_opt.dtype == np.float64 and p.x_opt.shape == (dim,)
    assert np.all(p.lower <= p.x_opt) and np.all(p.x_opt <= p.upper)
    expected_f_opt = dim * ST_1D if name == "styblinski-tang" else 0.0
    assert abs(p.f_opt - expected_f_opt) <= 1e-9 * max(1.0, abs(expected_f_opt))
    tol = _tol(p)
    assert abs(float(p(p.x_opt)) - p.f_opt) <= tol
    assert abs(float(p(p.x_opt[None])[0]) - p.f_opt) <= tol
    rng = np.random.default_rng(1)
    width = p.upper - p.lower
    near = p.x_opt + 1e-3 * width * rng.standard_normal((64, dim))
    values = p(np.concatenate([_uniform(p, 512), near]))
    assert values.shape == (576,)
    assert np.all(np.isfinite(values))
    assert values.min() >= p.f_opt - tol
    assert values.max() > p.f_opt + 1e-6  # not a constant function


@pytest.mark.parametrize(("name", "dim", "instance", "rotate"), CASES)
def test_matches_reference_formula_eq1(name: str, dim: int, instance: int, rotate: bool) -> None:
    p = problems.get(name, dim=dim, instance=instance, rotate=rotate)
    x = _uniform(p, 8, seed=2)
    rot = np.eye(dim) if p.rotation is None else p.rotation.numpy()
    shift = FUNCTIONS[name].x_star * np.ones(dim) if p.shift is None else p.shift.numpy()
    z = (x - shift) @ rot.T + FUNCTIONS[name].x_star
    expected = np.array([_ref(name, zi) for zi in z])
    np.testing.assert_allclose(p(x), expected, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize(("name", "dim", "instance", "rotate"), CASES)
def test_batch_equals_rows_and_backends_agree(
    name: str, dim: int, instance: int, rotate: bool
) -> None:
    p = problems.get(name, dim=dim, instance=instance, rotate=rotate)
    x = _uniform(p, 16, seed=3)
    batch = p(x)
    assert isinstance(batch, np.ndarray) and batch.dtype == np.float64
    rows = np.array([p(row) for row in x])
    assert all(np.ndim(p(row)) == 0 for row in x[:2])
    np.testing.assert_allclose(batch, rows, rtol=1e-12, atol=1e-12)

    out64 = p(torch.from_numpy(x))
    assert isinstance(out64, torch.Tensor) and out64.dtype == torch.float64
    np.testing.assert_allclose(out64.numpy(), batch, rtol=1e-14, atol=1e-14)

    out32 = p(torch.from_numpy(x).float())
    assert isinstance(out32, torch.Tensor) and out32.dtype == torch.float32
    np.testing.assert_allclose(out32.double().numpy(), batch, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_instances_are_deterministic_and_distinct(name: str) -> None:
    dim = 5
    a, b = problems.get(name, dim=dim, instance=3), problems.get(name, dim=dim, instance=3)
    c = problems.get(name, dim=dim, instance=4)
    assert torch.equal(a.rotation, b.rotation) and torch.equal(a.shift, b.shift)
    np.testing.assert_array_equal(a.x_opt, b.x_opt)
    assert not torch.allclose(a.rotation, c.rotation)
    assert not np.allclose(a.x_opt, c.x_opt)
    assert not np.allclose(a.x_opt, problems.get(name, dim=6, instance=3).x_opt[:dim])
    assert a.rotation.dtype == torch.float64
    torch.testing.assert_close(a.rotation @ a.rotation.T, torch.eye(dim, dtype=torch.float64))
    inner = (a.lower + 0.1 * (a.upper - a.lower), a.upper - 0.1 * (a.upper - a.lower))
    assert np.all(inner[0] <= a.x_opt) and np.all(a.x_opt <= inner[1])
    shifted = problems.get(name, dim=dim, instance=3, rotate=False)
    assert shifted.rotation is None
    np.testing.assert_array_equal(shifted.x_opt, a.x_opt)
    canonical = problems.get(name, dim=dim)
    assert canonical.rotation is None and canonical.shift is None
    np.testing.assert_array_equal(canonical.x_opt, np.full(dim, FUNCTIONS[name].x_star))


def test_instances_do_not_depend_on_python_hash_seed() -> None:
    code = (
        "import json, problems; p = problems.get('levy', dim=4, instance=5); "
        "print(json.dumps([p.x_opt.tolist(), p.rotation.tolist()]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    x_opt, rotation = json.loads(out)
    p = problems.get("levy", dim=4, instance=5)
    np.testing.assert_array_equal(np.array(x_opt), p.x_opt)
    np.testing.assert_array_equal(np.array(rotation), p.rotation.numpy())


def _mixed_difference(p: problems.Problem, seed: int) -> np.ndarray:
    """f(x+a e1+b e2) - f(x+a e1) - f(x+b e2) + f(x): zero for additively separable f."""
    rng = np.random.default_rng(seed)
    x = _uniform(p, 32, seed=seed)
    a, b = np.zeros((32, p.dim)), np.zeros((32, p.dim))
    a[:, 0], b[:, 1] = rng.uniform(0.2, 1.0, 32), rng.uniform(0.2, 1.0, 32)
    return p(x + a + b) - p(x + a) - p(x + b) + p(x)


def test_rotation_breaks_separability_of_rastrigin() -> None:
    shifted = problems.get("rastrigin", dim=6, instance=1, rotate=False)
    rotated = problems.get("rastrigin", dim=6, instance=1)
    assert np.max(np.abs(_mixed_difference(shifted, 4))) < 1e-9
    assert np.max(np.abs(_mixed_difference(rotated, 4))) > 1.0


@pytest.mark.parametrize("name", CONTINUOUS)
def test_wrong_shape_names_expected_shape(name: str) -> None:
    p = problems.get(name, dim=10)
    for bad in (np.zeros((3, 9)), np.zeros(11), np.zeros((2, 3, 10)), torch.zeros(4, 2)):
        with pytest.raises(ValueError, match=r"\(n, 10\)"):
            p(bad)


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="dim >= 2"):
        problems.get("rosenbrock", dim=1)
    for dim in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="dim"):
            problems.get("sphere", dim=dim)
    for instance in (-1, 1.5, True):
        with pytest.raises(ValueError, match="instance"):
            problems.get("sphere", dim=2, instance=instance)
    with pytest.raises(ValueError, match="rotate"):
        problems.get("sphere", dim=2, instance=1, rotate="no")


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ValueError, match="rastrigin") as info:
        problems.get("rastrign", dim=2)
    assert "problems.names()" in str(info.value)
    with pytest.raises(ValueError, match="Did you mean 'styblinski-tang'"):
        problems.get("stiblinski-tang", dim=2)
    with pytest.raises(ValueError) as info:
        problems.get("qqqqqqqq", dim=2)
    assert "Did you mean" not in str(info.value) and "problems.names()" in str(info.value)


def test_names_are_normalized() -> None:
    assert isinstance(problems.get("Styblinski_Tang", dim=2), problems.continuous.StyblinskiTang)
    assert isinstance(problems.get(" BENT-CIGAR ", dim=2), problems.continuous.BentCigar)


def test_register_validates_and_supports_other_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(problems, "_REGISTRY", dict(problems._REGISTRY))
    assert "my-sphere" not in problems.names("discrete")

    def factory(dim: int = 3, instance: int = 0) -> problems.Problem:
        return problems.get("sphere", dim=dim, instance=instance)

    problems.register("my_sphere", factory, kind="discrete")
    assert "my-sphere" in problems.names("discrete")
    assert "my-sphere" not in problems.names("continuous")
    assert problems.get("my-sphere").dim == 3
    with pytest.raises(ValueError, match="already registered"):
        problems.register("my-sphere", factory, kind="discrete")
    problems.register("my-sphere", factory, kind="hybrid", overwrite=True)
    assert problems.names("hybrid") == ["my-sphere"]
    with pytest.raises(ValueError, match="kind"):
        problems.register("other", factory, kind="contnuous")
    with pytest.raises(ValueError, match="kind"):
        problems.names("bogus")
    with pytest.raises(ValueError, match="callable"):
        problems.register("other", 3)
