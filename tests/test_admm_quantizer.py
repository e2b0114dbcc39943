"""ADMMQuantizer and the straight-through / polish parametrizations (hybrid.quantize) on
real networks, the float-vs-ADMM-vs-STE driver of the admm_quantized study, and the
quantizer's state round trip."""

from __future__ import annotations

import pytest
import torch
from nondiff.benchmarks.studies.admm_quantized import train
from nondiff.hybrid import ADMMQuantizer
from nondiff.hybrid.quantize import ScaledCodes, quantized_layers, quantized_weights
from nondiff.optim.projections import Levels, Ternary
from nondiff.problems.learning import digits
from nondiff.problems.quantized import validation_split

from tests.conftest import roundtrip


@pytest.fixture(scope="module")
def data():
    return digits(seed=0)


@pytest.mark.parametrize(("arch", "levels", "floor"), [
    ("mlp", "ternary", 0.85), ("mlp", "binary", 0.75), ("mlp", 3, 0.85), ("cnn", "ternary", 0.85),
])
def test_weights_end_exactly_on_their_sets_with_accuracy_far_above_chance(
        data, arch, levels, floor):
    out = train(data, arch, "admm", levels, epochs=6 if arch == "mlp" else 4, seed=0,
                hidden=(64,))
    assert out["on_levels"] and out["accuracy"] > floor  # chance is 0.1
    allowed = {"ternary": 2, "binary": 1, 3: 4}[levels]  # distinct |w| incl. 0
    for w in quantized_weights(out["model"]):
        mags = torch.unique(w.detach().abs())
        assert mags.numel() <= allowed
        if levels == 3:  # 3-bit: integers in [-3, 3] times one scale
            a = mags[mags > 0].min()
            assert torch.equal(torch.round(w / a) * a, w.detach())
            assert torch.round(w / a).abs().max() <= 3


def test_ste_baseline_also_lands_on_the_set(data):
    out = train(data, "mlp", "ste", "ternary", epochs=4, seed=0, hidden=(64,))
    assert out["on_levels"] and out["accuracy"] > 0.8
    for w in quantized_weights(out["model"]):  # exactly, not W + (P(W) - W)
        assert torch.unique(w.detach().abs()).numel() <= 2


def _run(model, quant, opt, batches):
    losses = []
    for xb, yb in batches:
        loss = torch.nn.functional.cross_entropy(model(xb), yb) + quant.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        quant.step()
        losses.append(float(loss.detach()))
    return losses


def test_state_dict_round_trip_resumes_duals_penalties_and_z(data):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    groups = [{"params": [model[0].weight], "levels": "binary", "rho": 0.01},
              {"params": [model[2].weight]}]
    quant = ADMMQuantizer(groups, levels="ternary", rho=0.02, every=3, rho_growth=1.5)
    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    batches = list(data.batches(64, seed=0))[:12]
    _run(model, quant, sgd, batches[:7])
    saved = roundtrip(quant.state_dict())
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    rest = _run(model, quant, sgd, batches[7:])
    model.load_state_dict(weights)
    again = ADMMQuantizer([{"params": [model[0].weight], "levels": "binary", "rho": 0.01},
                           {"params": [model[2].weight]}], levels="ternary", rho=0.02, every=3,
                          rho_growth=1.5)
    again.load_state_dict(saved)
    assert again.steps == 7 and [g["rho"] for g in again.param_groups] == [0.01 * 1.5**2,
                                                                          0.02 * 1.5**2]
    assert float(again.penalty().detach()) > 0
    assert torch.equal(again.state[1]["u"], saved["state"][1]["u"])
    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    assert _run(model, again, sgd, batches[7:]) == rest
    with pytest.raises(ValueError, match="layout"):
        ADMMQuantizer([model[0].weight]).load_state_dict(saved)
    with pytest.raises(ValueError, match="keys"):
        again.load_state_dict({**saved, "extra": 0})


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"levels": "quaternary"}, "levels"), ({"levels": 1}, "levels"), ({"rho": 0.0}, "rho"),
    ({"every": 0}, "every"), ({"rho_growth": 0.9}, "rho_growth"),
])
def test_bad_arguments_are_named(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        ADMMQuantizer([torch.nn.Parameter(torch.zeros(3))], **kwargs)
    with pytest.raises(ValueError, match="empty"):
        ADMMQuantizer([])


def test_validation_split_holds_out_part_of_train_only(data):
    val = validation_split(data, 0.25, seed=1)
    n = len(data.y_train)
    assert len(val.y_test) == n // 4 and len(val.y_train) == n - n // 4
    rows = {tuple(r.tolist()) for r in torch.cat([val.x_train, val.x_test])}
    assert rows == {tuple(r.tolist()) for r in data.x_train}  # a partition of train
    assert torch.equal(validation_split(data, 0.25, seed=1).y_test, val.y_test)
    with pytest.raises(ValueError, match="fraction"):
        validation_split(data, 1.0)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"optimizer": "rmsprop"}, "optimizer"), ({"rho": 1.0, "rho_end": 0.1}, "rho_end"),
    ({"lr": 0.0}, "lr"),
])
def test_train_names_bad_settings(data, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        train(data, "mlp", "admm", epochs=1, **kwargs)


def test_sgd_admm_setting_of_the_benchmark_lands_on_the_set(data):
    out = train(data, "mlp", "admm", "ternary", epochs=4, seed=0, hidden=(64,),
                optimizer="sgd", rho=1e-3, rho_end=0.3)
    assert out["on_levels"] and out["accuracy"] > 0.85


@pytest.mark.parametrize("method", ["admm", "ste"])
def test_polish_keeps_weights_on_their_sets_and_trains_scales_and_biases(data, method):
    out = train(data, "mlp", method, "ternary", epochs=5, seed=0, hidden=(64,),
                optimizer="sgd", rho=1e-3, rho_end=0.3, polish_epochs=2)
    assert out["on_levels"] and out["accuracy"] > 0.85
    assert all(p.requires_grad for p in out["model"].parameters())  # handed back trainable


def test_scaled_codes_freeze_codes_and_step_the_scale_like_a_refit():
    """A gradient step of the polish moves the scale as a step on every weight followed
    by a least-squares refit of the scale on the same codes would."""
    torch.manual_seed(0)
    w, scale = Ternary("fit").fit(torch.randn(8, 16))
    codes = torch.round(w / scale)
    param = ScaledCodes(w, Ternary("fit"))
    target = torch.randn(8, 16)
    loss = ((param(w) - target) ** 2).sum()
    loss.backward()
    grad_w = 2 * (scale * codes - target)  # dL/dW at the start
    lr = 0.01
    with torch.no_grad():
        param.raw_scale -= lr * param.raw_scale.grad
    stepped = w - lr * grad_w
    refit = float((stepped * codes).sum() / (codes * codes).sum())
    assert float(param.scale.detach()) == pytest.approx(refit, rel=1e-5)
    assert torch.equal(param.codes, codes)
    assert Ternary("fit").contains(param(w).detach())


def test_scaled_codes_refuse_levels_that_are_not_integers_times_a_scale():
    odd = Levels([-1.0, 0.3, 1.0], scale="fit")
    w = odd.project(torch.randn(40))
    with pytest.raises(ValueError, match="integers times a scale"):
        ScaledCodes(w, odd)


def test_keep_float_leaves_the_first_layer_in_float_for_every_method(data):
    for method in ("admm", "ste"):
        out = train(data, "mlp", method, "ternary", epochs=3, seed=0, hidden=(64,),
                    optimizer="sgd", rho=1e-3, rho_end=0.3, keep_float=(0,))
        model = out["model"]
        first, last = model[0].weight.detach(), model[-1].weight.detach()
        assert out["on_levels"] and out["accuracy"] > 0.8
        assert torch.unique(first.abs()).numel() > 100  # float
        assert torch.unique(last.abs()).numel() <= 2  # ternary
        assert quantized_layers(model, (0,)) == [model[-1]]
    with pytest.raises(ValueError, match="keep_float"):
        train(data, "mlp", "admm", epochs=1, keep_float=(5,))


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"method": "float", "polish_epochs": 1}, "polish_epochs"),
    ({"method": "admm", "polish_epochs": 2}, "polish_epochs"),
    ({"method": "ste", "polish_epochs": 1, "polish_lr": -1.0}, "polish_lr"),
])
def test_polish_settings_are_checked(data, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        train(data, "mlp", epochs=2, **kwargs)


def test_scaled_codes_load_a_state_dict_consistently_and_a_refused_freeze_changes_nothing():
    from nondiff.hybrid.quantize import freeze_codes
    from torch import nn

    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 3)) for _ in range(2)]
    for net in nets:
        for layer in net:
            layer.weight.data = Ternary("fit").project(layer.weight.data)
        freeze_codes(list(net), Ternary("fit"))
    nets[1].load_state_dict(nets[0].state_dict())
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(nets[0], nets[1], strict=True))
    plain = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 3))
    with pytest.raises(ValueError, match="integers times a scale"):
        freeze_codes(list(plain), Levels([-1.0, 0.3, 1.0]))  # not integer codes: refused
    assert all(layer.weight.requires_grad for layer in plain)  # and nothing frozen
