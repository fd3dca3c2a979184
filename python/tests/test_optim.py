"""downhill.optim: torch.optim drop-ins backed by the library's engine."""

import io
import math

import pytest
import torch

import downhill
import downhill.optim as optim


def twin_params(dtype=torch.float32):
    first = [torch.randn(3, 4, dtype=dtype, requires_grad=True),
             torch.randn(5, dtype=dtype, requires_grad=True)]
    second = [p.detach().clone().requires_grad_(True) for p in first]
    return first, second


def halflife(beta):
    return math.log(2.0) / -math.log(beta)


# (class, its arguments by PyTorch's names, the library's algorithm, the same by its names)
CASES = [
    (optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True},
     "sgd", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    (optim.NAG, {"lr": 0.05}, "nag", {"learning_rate": 0.05, "momentum": 0.9}),
    (optim.RProp, {"lr": 0.01, "etas": (0.4, 1.3), "step_sizes": (1e-5, 10.0)},
     "rprop", {"learning_rate": 0.01, "rprop_decrease": 0.4, "rprop_increase": 1.3,
               "rprop_min_step": 1e-5, "rprop_max_step": 10.0}),
    (optim.RMSProp, {"lr": 0.01, "alpha": 0.95, "eps": 1e-6},
     "rmsprop", {"learning_rate": 0.01, "rms_halflife": halflife(0.95), "rms_regularizer": 1e-6}),
    (optim.ADAGRAD, {"lr": 0.1, "eps": 1e-8}, "adagrad",
     {"learning_rate": 0.1, "rms_regularizer": 1e-8}),
    (optim.ADADELTA, {"rho": 0.8, "eps": 1e-5, "weight_decay": 0.01}, "adadelta",
     {"rms_halflife": halflife(0.8), "rms_regularizer": 1e-5, "weight_decay": 0.01}),
    (optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-7}, "adam",
     {"learning_rate": 0.01, "beta1": 0.8, "beta2": 0.99, "rms_regularizer": 1e-7}),
    (optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}, "adamw",
     {"learning_rate": 0.01, "weight_decay": 0.1}),
    (optim.Lion, {"lr": 1e-3}, "lion", {"learning_rate": 1e-3}),
    (optim.Optimizer, {"algo": "adam", "learning_rate": 0.02, "max_gradient_norm": 0.5},
     "adam", {"learning_rate": 0.02, "max_gradient_norm": 0.5}),
]


@pytest.mark.parametrize("cls,torch_args,algo,settings", CASES,
                         ids=[case[0].__name__ + "-" + case[2] for case in CASES])
def test_each_class_is_the_library_optimizer_on_the_same_gradients(cls, torch_args, algo,
                                                                   settings):
    dropin_params, library_params = twin_params()
    dropin = cls(dropin_params, **torch_args)
    library = downhill.build(algo, params=library_params, **settings)
    for _ in range(6):
        grads = [torch.randn_like(p) for p in dropin_params]
        for p, g in zip(dropin_params, grads):
            p.grad = g.clone()
        dropin.step()
        dropin.zero_grad()
        assert library.apply(grads)
    for a, b in zip(dropin_params, library_params):
        assert torch.equal(a.detach(), b.detach())
    assert dropin.update_count == 6


def test_esgd_step_closure_computes_its_hessian_vector_products():
    x = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    scale = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64)
    dropin = optim.ESGD([x], lr=0.1)
    library = downhill.build("esgd", params=[y], learning_rate=0.1)
    for step in range(4):
        torch.manual_seed(step)
        dropin.step(lambda: (scale * x ** 4).sum())
        torch.manual_seed(step)
        g = 4 * scale * y.detach() ** 3  # the gradient, by hand
        probe = torch.randn_like(y)
        hv = 12 * scale * y.detach() ** 2 * probe  # H·r with H = diag(12·scale·y²)
        assert library.apply([g], [hv])
        assert torch.allclose(x.detach(), y.detach(), rtol=1e-12, atol=0)


def test_adamw_matches_torch_adamw_over_100_steps():
    torch.manual_seed(3)
    features = torch.randn(64, 10)
    targets = torch.randn(64, 1)
    # A linear model: each side's gradients come from its own parameters, and least squares
    # does not amplify the sides' rounding differences (downhill divides m̂ by √v̂ + ε in
    # another order than PyTorch), as a deeper network's path would.
    models = [torch.nn.Linear(10, 1) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    ours = optim.AdamW(models[0].parameters(), lr=1e-2, betas=(0.9, 0.999), weight_decay=0.05)
    theirs = torch.optim.AdamW(models[1].parameters(), lr=1e-2, betas=(0.9, 0.999),
                               weight_decay=0.05)
    for _ in range(100):
        for model, opt in zip(models, (ours, theirs)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(features), targets).backward()
            opt.step()
    gap = max((a - b).abs().max().item()
              for a, b in zip(models[0].parameters(), models[1].parameters()))
    assert gap <= 1e-6


def test_an_lr_scheduler_changes_the_rate():
    x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = optim.SGD([x], lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    expected = 0.0
    for k in range(4):
        x.grad = torch.ones(2, dtype=torch.float64)
        opt.step()
        scheduler.step()
        expected -= 0.5 ** k  # lr 1, 0.5, 0.25, 0.125 on a gradient of 1
        assert x.tolist() == [expected, expected]
    assert opt.param_groups[0]["lr"] == 0.0625


def test_parameter_groups_and_frozen_parameters():
    a = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    c = torch.ones(1, dtype=torch.float64)  # does not require grad: frozen
    opt = optim.SGD([{"params": [c]}, {"params": [a], "lr": 0.1}, {"params": [b]}], lr=0.01)
    a.grad = torch.ones(2, dtype=torch.float64)
    b.grad = torch.ones(3, dtype=torch.float64)
    opt.step()
    assert a.tolist() == [-0.1, -0.1] and b.tolist() == [-0.01] * 3 and c.tolist() == [1.0]


def test_missing_gradients_and_unknown_arguments_are_named():
    a = torch.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match="did you mean 'betas'"):
        optim.Adam([a], betaz=(0.9, 0.99))
    with pytest.raises(ValueError, match="amsgrad"):
        optim.Adam([a], amsgrad=True)
    opt = optim.Adam([a])
    with pytest.raises(ValueError, match=r"parameter 0 .*no gradient"):
        opt.step()


def test_state_dict_round_trip_resumes_bit_for_bit():
    first, second = twin_params()
    opt = optim.Adam(first, lr=0.01)
    grads = [[torch.randn_like(p) for p in first] for _ in range(10)]
    for step in range(5):
        for p, g in zip(first, grads[step]):
            p.grad = g
        opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    assert set(opt.state_dict()["state"][0]) == {"m", "v", "step"}
    for p, q in zip(second, first):
        p.data.copy_(q.detach())
    resumed = optim.Adam(second, lr=0.5)  # the state dict's lr wins, as in torch
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer))
    assert resumed.param_groups[0]["lr"] == 0.01
    for step in range(5, 10):
        for o, params in ((opt, first), (resumed, second)):
            for p, g in zip(params, grads[step]):
                p.grad = g.clone()
            o.step()
    for a, b in zip(first, second):
        assert torch.equal(a.detach(), b.detach())
