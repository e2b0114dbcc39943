"""Search spaces: encode/decode round trips (hypothesis) and every validation error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nondiff.optim.spaces import (
    Binary,
    Categorical,
    Integer,
    Permutation,
    Product,
    Real,
    leaf_kinds,
)

finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(st.floats(1e-4, 1e-1))
def test_log_real_round_trip(value):
    space = Real(1e-4, 1e-1, log=True)
    assert space.decode(space.encode(value)) == pytest.approx(value, rel=1e-12)
    assert space.encode(value)[0] == pytest.approx(math.log(value))


@given(st.lists(finite, min_size=3, max_size=3))
def test_real_vector_round_trip(values):
    space = Real(-1e6, 1e6, size=3)
    assert np.array_equal(space.decode(space.encode(values)), np.asarray(values))


@given(st.integers(-5, 7))
def test_integer_round_trip(value):
    space = Integer(-5, 7)
    assert space.decode(space.encode(value)) == value


@given(st.lists(st.sampled_from(["a", 2, None, (1, 2)]), min_size=4, max_size=4))
def test_categorical_sequence_round_trip(values):
    space = Categorical(["a", 2, None, (1, 2)], size=4)
    assert space.decode(space.encode(values)) == values


@given(st.lists(st.booleans(), min_size=9, max_size=9))
def test_binary_round_trip(bits):
    space = Binary(9)
    assert space.decode(space.encode(bits)).tolist() == bits


@given(st.permutations(list(range(6))))
def test_permutation_round_trip(order):
    space = Permutation(6)
    assert space.decode(space.encode(order)).tolist() == list(order)


@settings(max_examples=50)
@given(st.integers(0, 2**32 - 1))
def test_product_samples_decode_and_round_trip(seed):
    space = Product({"lr": Real(1e-4, 1.0, log=True), "op": Categorical(["a", "b", "c"]),
                     "inner": Product(depth=Integer(1, 4), mask=Binary(3)),
                     "order": Permutation(4)})
    rows = space.sample(np.random.default_rng(seed), 5)
    assert rows.shape == (5, space.size)
    lower, upper = space.bounds()
    assert np.all(rows >= lower) and np.all(rows <= upper)
    for row, value in zip(rows, space.decode_batch(rows), strict=True):
        assert np.allclose(space.encode(value), row)


def test_leaves_name_nested_entries_and_slices():
    space = Product(a=Real(0, 1), b=Product(c=Binary(2), d=Categorical([1, 2, 3])))
    leaves = [(name, leaf.kind, (s.start, s.stop)) for name, leaf, s in space.leaves()]
    assert leaves == [("a", "real", (0, 1)), ("b.c", "binary", (1, 3)),
                      ("b.d", "categorical", (3, 4))]
    assert leaf_kinds(space) == {"real", "binary", "categorical"}
    assert np.array_equal(space.initial(), [0.5, 0.5, 0.5, 1.0])


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: Real(1, 1), "low < high"),
        (lambda: Real(2.0, 2.0), r"Categorical\(\[2.0\]\)"),
        (lambda: Real(0, 1, log=True), "log=True"),
        (lambda: Real(0, 1, size=0), "size"),
        (lambda: Integer(3, 1), "low <= high"),
        (lambda: Integer(0.5, 2), "integer"),
        (lambda: Categorical([]), "empty"),
        (lambda: Categorical(["a", "a"]), "distinct"),
        (lambda: Binary(-1), "Binary length n must be a non-negative integer"),
        (lambda: Permutation(-2), "Permutation length n must be a non-negative integer"),
        (lambda: Product(), "at least one"),
        (lambda: Product(a=3), "not a Space"),
    ],
)
def test_invalid_spaces(build, fragment):
    with pytest.raises(ValueError, match=fragment):
        build()


@pytest.mark.parametrize(
    ("space", "value", "fragment"),
    [
        (Real(0, 1), 1.5, "outside"),
        (Integer(0, 3), 4, "not in"),
        (Integer(0, 3), 1.5, "not in"),
        (Categorical(["x", "y"]), "z", "not one of the choices"),
        (Binary(3), [1, 0, 2], "values in"),
        (Binary(3), [1, 0], "values in"),
        (Permutation(3), [0, 0, 1], "not a permutation"),
        (Product(a=Real(0, 1)), {"b": 0.5}, "unknown names"),
        (Product(a=Real(0, 1)), 0.5, "dict"),
    ],
)
def test_values_outside_the_space_are_named(space, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        space.encode(value)
    assert not space.contains(value)


@pytest.mark.parametrize(
    ("space", "encoded", "fragment"),
    [
        (Real(0, 1), [2.0], "outside"),
        (Categorical(["x", "y"]), [2.0], "outside"),
        (Integer(0, 3), [-1.0], "outside"),
        (Binary(2), [0.0, 1.0, 1.0], "shape"),
        (Permutation(3), [0.0, 2.0, 2.0], "not a permutation"),
        (Real(0, 1), [np.nan], "non-finite"),
    ],
)
def test_decoded_values_outside_the_space_are_named(space, encoded, fragment):
    with pytest.raises(ValueError, match=fragment):
        space.decode(encoded)


def test_product_lookup_error_names_the_choices():
    with pytest.raises(ValueError, match=r"names are \['a'\]"):
        Product(a=Real(0, 1))["b"]
