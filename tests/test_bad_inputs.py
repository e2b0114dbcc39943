"""The bad-input table (issue 16.8): every input that was silently accepted, refused
late or reported misleadingly gets a ValueError naming the argument, the value and
the fix, before any work starts.

One row per input: (id, callable taking ``tmp_path`` that triggers it, expected
error class, words the message must contain). Objectives marked ``_never`` fail the
test if they are called: the refusal must come before the first evaluation.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import torch
from nondiff.benchmarks.store import ResultStore
from nondiff.optim import minimize, registry
from nondiff.optim.evaluate import ProcessPoolEvaluator
from nondiff.optim.spaces import Categorical, Integer, Product, Real


def _sphere(x):
    return float((np.asarray(x, dtype=np.float64) ** 2).sum())


def _never(x):
    raise AssertionError("the objective ran: the bad input was not refused before the work")


def _run(fn=_never, x0=None, **kwargs):
    kwargs.setdefault("optimizer", "snes")
    kwargs.setdefault("budget", 60)
    return minimize(fn, np.ones(3) if x0 is None else x0, **kwargs)


def _tell(fitness):
    opt = registry.create("snes", np.zeros(3), seed=0)
    x = opt.ask()
    return opt.tell(x, fitness(len(x)))


def _foreign_db(tmp_path):
    path = tmp_path / "photos.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE albums (id INTEGER PRIMARY KEY, title TEXT)")
    try:
        ResultStore(path)
    finally:
        with sqlite3.connect(path) as db:  # nothing of ours was written into it
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert tables == {"albums"}, tables


def _file_as_folder(tmp_path):
    (tmp_path / "afile").write_text("")
    return tmp_path / "afile" / "run.pt"


ROWS = [
    # silently accepted before
    ("fitness-none", lambda t: _run(lambda x: None), ValueError,
     ["objective's value", "None", "float"]),
    ("fitness-numeric-string", lambda t: _run(lambda x: "1.5"), ValueError,
     ["objective's value", "strings", "float()"]),
    ("tell-fitness-none", lambda t: _tell(lambda n: [None] * n), ValueError, ["fitness", "None"]),
    ("tell-fitness-numeric-strings", lambda t: _tell(lambda n: ["1.0"] * n), ValueError,
     ["fitness", "strings", "float()"]),
    ("fitness-complex", lambda t: _run(lambda x: complex(_sphere(x), 1.0)), ValueError,
     ["objective's value", "complex", "imaginary part", "np.real"]),
    ("tell-fitness-complex", lambda t: _tell(lambda n: np.ones(n) + 1j), ValueError,
     ["fitness", "complex", "imaginary"]),
    ("x0-complex", lambda t: _run(x0=np.ones(3) + 1j), ValueError,
     ["x0", "complex", "x0.real"]),
    ("x0-complex-tensor", lambda t: _run(x0=torch.ones(3, dtype=torch.complex64)), ValueError,
     ["x0", "complex", "x0.real"]),
    ("target-nan", lambda t: _run(target=float("nan")), ValueError, ["target", "nan", "None"]),
    # obscure or late before
    ("x0-bfloat16", lambda t: _run(x0=torch.ones(3, dtype=torch.bfloat16)), ValueError,
     ["x0", "bfloat16", "x0.float()"]),
    ("target-string", lambda t: _run(target="abc"), ValueError, ["target", "'abc'", "number"]),
    ("callbacks-not-callable", lambda t: _run(callbacks=[1]), ValueError,
     ["callbacks[0]", "got 1", "cb(metrics, optimizer)"]),
    ("callbacks-not-a-list", lambda t: _run(callbacks=print), ValueError,
     ["callbacks", "list of functions"]),
    ("integer-infinite-bound", lambda t: Integer(0, np.inf), ValueError,
     ["Integer", "high=inf", "finite"]),
    ("categorical-of-arrays", lambda t: Categorical([np.zeros(2), np.ones(2)]), ValueError,
     ["Categorical", "choice 0", "ndarray", "tuples"]),
    ("foreign-sqlite-db", _foreign_db, ValueError,
     ["photos.sqlite", "another application", "albums", "--db"]),
    ("checkpoint-unwritable", lambda t: _run(checkpoint=_file_as_folder(t)), ValueError,
     ["checkpoint=", "run.pt", "cannot be written", "writable folder"]),
    ("checkpoint-is-a-folder", lambda t: _run(checkpoint=t), ValueError,
     ["checkpoint=", "is a folder", "run.pt"]),
    ("pool-max-retries-negative", lambda t: ProcessPoolEvaluator(workers=1, max_retries=-1),
     ValueError, ["max_retries", "-1", "non-negative"]),
    ("pool-lambda-objective",
     lambda t: _run(lambda x: _never(x), evaluator=ProcessPoolEvaluator(workers=1)),
     ValueError, ["cannot be sent", "lambda", "top level", "SerialEvaluator"]),
    # misleading before (reported as a bounds problem); one-value leaves are now legal
    # constants (tests/test_constant_leaves.py), a space of nothing but constants is not
    ("all-constant-space",
     lambda t: _run(x0=Product({"k": Integer(2, 2), "c": Categorical(["x"])}), optimizer="ga"),
     ValueError, ["nothing to search", "Integer(2, 2)", "constant", "space.decode([])"]),
    ("one-value-real", lambda t: Real(2.0, 2.0), ValueError,
     ["low < high", "low=high=2.0", "Categorical([2.0])"]),
    ("pgpe-center-lr", lambda t: registry.create("pgpe", np.zeros(3), center_lr=-1), ValueError,
     ["center_lr", "-1"]),
]


@pytest.mark.parametrize(("trigger", "error", "words"), [row[1:] for row in ROWS],
                         ids=[row[0] for row in ROWS])
def test_bad_input_is_refused_with_a_named_fix(tmp_path, trigger, error, words):
    with pytest.raises(error) as caught:
        trigger(tmp_path)
    message = str(caught.value)
    missing = [w for w in words if w not in message]
    assert not missing, f"{missing} not in: {message}"
