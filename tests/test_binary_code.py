"""The binary code (nondiff.optim.binary_code): an optimizer of bit strings (the cGA)
searching integer, categorical and permutation leaves."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from nondiff.optim import BinaryCoded, CompactGA, minimize, registry
from nondiff.optim.base import UnsupportedSpaceError
from nondiff.optim.binary_code import bits_for, decode_bits, encode_values
from nondiff.optim.spaces import Binary, Categorical, Integer, Permutation, Product, Real

from tests.conftest import ask_tell_run, roundtrip

SPACE = Product(c=Categorical(list("abc")), i=Integer(2, 6, size=2), b=Binary(2),
                p=Permutation(4))


def _loss(x):
    return np.abs(np.asarray(x) - 1.0).sum(axis=1)


@pytest.mark.parametrize("code", ["gray", "binary"])
@pytest.mark.parametrize("extra", [0, 1, 2])
def test_every_value_has_a_code_and_the_split_is_as_even_as_the_bits_allow(code, extra):
    for k in range(2, 18):
        b = bits_for(k, extra)
        assert 2 ** b >= k and (b == math.log2(k) or b == math.ceil(math.log2(k)) + extra)
        codes = np.array(list(itertools.product((0, 1), repeat=b)))
        values = decode_bits(codes, k, code)
        counts = np.bincount(values, minlength=k)
        assert len(counts) == k and counts.min() >= 1  # every value reachable
        assert counts.max() - counts.min() <= 1  # floor or ceil of 2^b / k codes each
        assert decode_bits(encode_values(np.arange(k), k, b, code), k, code).tolist() \
            == list(range(k))


def test_gray_codes_of_neighbouring_values_differ_in_one_bit():
    bits = encode_values(np.arange(8), 8, 3, "gray")
    assert (np.abs(np.diff(bits, axis=0)).sum(axis=1) == 1).all()
    plain = encode_values(np.arange(8), 8, 3, "binary")
    assert np.abs(plain[3] - plain[4]).sum() == 3  # the Hamming cliff 011 | 100


def _permutation_bias(extra: int) -> float:
    """Total variation from uniform of Permutation(3) under uniform bits (every string)."""
    opt = registry.create("cga", Permutation(3), extra_bits=extra, seed=0)
    bits = np.array(list(itertools.product((0, 1), repeat=opt.n_bits)))
    rows = opt.decode(bits).astype(np.int64)
    freq = np.unique(rows @ np.array([1, 3, 9]), return_counts=True)[1] / len(rows)
    assert len(freq) == 6  # every permutation reachable
    return 0.5 * float(np.abs(freq - 1 / 6).sum())


def test_every_permutation_is_reachable_and_key_bits_keep_the_tie_bias_small():
    biases = [_permutation_bias(extra) for extra in (0, 1, 2)]
    assert biases[1] < 0.05 and biases[0] > biases[1] > biases[2]  # ties favour the identity


def test_registry_codes_discrete_spaces_for_the_cga_and_refuses_reals():
    assert registry.supported_kinds("cga") == {"binary", "categorical", "integer",
                                               "permutation"}
    assert "cga" in registry.names_supporting({"categorical", "permutation"})
    opt = registry.create("cga", SPACE, seed=0, virtual_popsize=7)
    assert type(opt) is BinaryCoded and opt.name == "cga" and opt.virtual_popsize == 7
    assert opt.n_bits == 3 + 2 * 4 + 2 + 4 * 4  # k=3: 2+1 bits, k=5: 3+1, keys of 2+1+1
    assert type(registry.create("cga", Binary(4), seed=0)) is CompactGA  # bits: itself
    with pytest.raises(UnsupportedSpaceError, match="real leaves have no binary code") as error:
        registry.create("cga", Product(a=Real(0, 1), b=Integer(0, 3)))
    assert "snes" in str(error.value) and "cga" not in str(error.value).split("handle")[-1]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"code": "grey"}, "code must be one of"),
    ({"extra_bits": -1}, "extra_bits"),
    ({"extra_bits": 1.5}, "extra_bits"),
    ({"virtual_popsize": 1}, "virtual_popsize"),
    ({"popsize": 1}, "popsize must be at least 2"),
    ({"width": 1.0}, "unknown option of cga: 'width'"),
])
def test_bad_options_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        registry.create("cga", SPACE, **kwargs)


def test_bad_inner_and_x0_are_named():
    with pytest.raises(ValueError, match="inner must be an optimizer class of bit strings"):
        BinaryCoded(SPACE, inner=registry.get("snes"))
    with pytest.raises(ValueError, match="pass a Space"):
        BinaryCoded(np.zeros(3), inner=CompactGA)


@pytest.mark.parametrize(("space", "fn", "budget"), [
    (Categorical(list("abcde"), size=4),
     lambda v: float(sum(a != b for a, b in zip(v, "ebda", strict=True))), 3000),
    (Integer(-3, 7, size=3), lambda v: float(np.abs(np.asarray(v) - [7, -3, 2]).sum()), 3000),
    (Permutation(5), lambda v: float(np.sum(np.asarray(v) != [3, 0, 4, 1, 2])), 4000),
])
def test_the_cga_finds_a_known_optimum_through_the_code(space, fn, budget):
    for seed in range(3):
        res = minimize(fn, space, optimizer="cga", budget=budget, seed=seed)
        assert res.f == 0.0, (seed, res.x)


def test_asks_decode_into_the_space_and_resume_is_bit_identical():
    opt = registry.create("cga", SPACE, seed=2, popsize=4, code="binary", extra_bits=2)
    for x in ask_tell_run(opt, 5, _loss):
        SPACE.decode_batch(x)
    SPACE.decode(opt.recommend())
    x = opt.ask()  # saved between ask and tell: the resumed one tells the same rows
    saved = roundtrip(opt.state_dict())
    opt.tell(x, _loss(x))
    expected = ask_tell_run(opt, 6, _loss)
    resumed = registry.create("cga", SPACE, seed=2, popsize=4, code="binary", extra_bits=2)
    resumed.load_state_dict(saved)
    resumed.tell(x.copy(), _loss(x))
    got = ask_tell_run(resumed, 6, _loss)
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))
    other = registry.create("cga", SPACE, seed=2, popsize=4)  # the default code
    with pytest.raises(ValueError, match=r"another configuration.*code"):
        other.load_state_dict(saved)


def test_told_rows_are_matched_to_their_bits_and_others_encoded():
    opt = registry.create("cga", SPACE, seed=1, popsize=6)
    x = opt.ask()
    bits = opt.state["bits"].copy()
    subset = x[[4, 1]]
    assert np.array_equal(opt._bits_of(subset), bits[[4, 1]])  # asked rows: their own bits
    own = SPACE.encode({"c": "b", "i": [6, 2], "b": [True, False], "p": [2, 0, 3, 1]})
    encoded = opt._bits_of(own[None])
    assert np.array_equal(opt.decode(encoded)[0], own)  # a user's row: a code of it
    p_before = opt.inner.state.p.copy()
    bad = x.copy()
    bad[0, -4:] = [0, 0, 1, 2]  # inside the box, no permutation
    with pytest.raises(ValueError, match="row 0 is no value of the space"):
        opt.tell(bad, _loss(bad))
    assert np.array_equal(opt.inner.state.p, p_before) and opt.counters["evaluations"] == 0
    opt.tell(np.vstack([subset, own]), _loss(np.vstack([subset, own])))
    winner = opt.decode(opt.inner.best_x[None])[0]
    assert np.array_equal(winner, opt.best_x)  # the inner optimizer saw the same rows


def test_a_space_with_its_own_start_reaches_the_inner_optimizer_encoded():
    class Warm(Product):
        def initial(self):
            return self.encode({"c": "c", "i": [5, 3]})

    opt = registry.create("cga", Warm(c=Categorical(list("abc")), i=Integer(2, 6, size=2)),
                          seed=0)
    assert np.array_equal(opt.decode(opt.inner.space.initial()[None])[0], [2, 5, 3])


def test_the_cga_frequencies_converge_on_the_coded_value():
    space, target = Integer(0, 9, size=3), np.array([9.0, 0.0, 6.0])
    opt = registry.create("cga", space, recommend="mode", seed=4)
    for _ in range(1500):
        x = opt.ask()
        opt.tell(x, np.abs(x - target).sum(axis=1))
    assert np.array_equal(opt.recommend(), target)  # the rounded frequencies, decoded
    sampled = opt.ask(1000).astype(int)  # each entry's most drawn value is the target's (the
    # borders 1/n keep every bit a little loose, a redundant low bit looser)
    modes = [np.bincount(column, minlength=10).argmax() for column in sampled.T]
    assert modes == target.tolist() and ((sampled == target).mean(axis=0) > 0.4).all()


def test_a_range_too_wide_for_the_code_is_refused_before_anything_is_built():
    with pytest.raises(ValueError, match=r"needs 42 bits per entry, more than 31.*split"):
        registry.create("cga", Integer(0, 2 ** 40))
    assert registry.create("cga", Integer(0, 2 ** 29)).n_bits == 31


def test_nonfinite_fitness_ranks_worst_and_a_failed_load_changes_nothing():
    opt = registry.create("cga", SPACE, seed=0, popsize=4)
    x = opt.ask()
    metrics = opt.tell(x, np.array([np.nan, 1.0, np.inf, 2.0]))
    assert metrics["nonfinite"] == 2 and opt.best_f == 1.0
    assert np.array_equal(opt.best_x, x[1])
    before = roundtrip(opt.state_dict())
    foreign = roundtrip(registry.create("cga", Binary(5), seed=0).state_dict())
    with pytest.raises(ValueError, match="another configuration"):
        opt.load_state_dict(foreign)
    edited = roundtrip(opt.state_dict())
    edited["state"]["bits"] = [[2.0] * opt.n_bits]
    edited["state"]["asked"] = [[0.0] * opt.dim]
    with pytest.raises(ValueError):
        opt.load_state_dict(edited)
    after = roundtrip(opt.state_dict())
    assert np.array_equal(np.asarray(after["state"]["inner"]["state"]["p"]),
                          np.asarray(before["state"]["inner"]["state"]["p"]))
