"""The seed's three interfaces on PyTorch tensors, datasets, monitors, callbacks, Ctrl-C."""

import os
import signal

import numpy as np
import pytest
import scipy.sparse
import torch

import downhill


def factorization_problem():
    """The seed's quick start: a sparse low-rank approximation of y."""
    A, B, K = 20, 5, 3
    u = torch.randn(A, K, dtype=torch.float64, requires_grad=True)
    v = torch.randn(K, B, dtype=torch.float64, requires_grad=True)
    y = (torch.randn(A, K, dtype=torch.float64) @ torch.randn(K, B, dtype=torch.float64)
         + torch.randn(A, B, dtype=torch.float64))

    def loss(z):
        err = (z - u @ v).square()
        return err.mean() + u.abs().mean() + (v * v).mean()

    return u, v, y, loss


def test_minimize_finds_params_and_reports_the_seeds_monitors():
    u, v, y, loss = factorization_problem()
    start = loss(y).item()
    monitors = (("err", lambda z: (z - u @ v).square().mean()),
                ("|u|<0.1", lambda: (u.abs() < 0.1).double().mean()),
                ("|v|<0.1", lambda: (v.abs() < 0.1).double().mean()))
    train, valid = downhill.minimize(loss=loss, train=[y], patience=0, batch_size=20,
                                     max_gradient_norm=1, learning_rate=0.1, monitors=monitors,
                                     monitor_gradients=True)
    assert list(train)[:4] == ["loss", "err", "|u|<0.1", "|v|<0.1"]
    assert "grad(unnamed0)" in train and "grad(unnamed1)" in train
    # The parameters are the best validation's, whose loss last_run reports.
    result = downhill.minimize(loss=loss, train=[y], patience=0, batch_size=20,
                               learning_rate=0.1)
    assert result.last_run.stop == "patience"
    assert loss(y).item() == pytest.approx(result.last_run.best["loss"], rel=1e-12)
    assert loss(y).item() < start


def test_iterate_yields_dicts_and_break_keeps_the_parameters():
    u, v, y, loss = factorization_problem()
    opt = downhill.build("rmsprop", loss=loss, params={"u": u, "v": v}, learning_rate=0.1)
    seen = []
    for train, valid in opt.iterate([y], batch_size=20, validate_every=1):
        seen.append(train["loss"])
        if len(seen) == 3:
            after_three = (u.detach().clone(), v.detach().clone())
            break
    assert len(seen) == 3
    assert opt.last_run.stop == "left"
    assert torch.equal(u.detach(), after_three[0]) and torch.equal(v.detach(), after_three[1])


def test_the_seeds_iterate_form_with_a_list_of_batches():
    u, v, y, loss = factorization_problem()
    opt = downhill.build(algo="rmsprop", loss=loss, params=[u, v], monitor_gradients=True)
    passes = 0
    for metrics, _ in opt.iterate(train=[[y]], patience=0, batch_size=20, max_gradient_norm=1,
                                  learning_rate=0.1, max_passes=4):
        assert "grad(param0)" in metrics
        passes += 1
    assert passes == 4


def test_raw_updates_follow_the_sgd_formula():
    x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    opt = downhill.build("sgd", params=[x], learning_rate=0.1)
    g = (x - c).detach()  # the gradient of ½‖x − c‖²
    assert opt.apply([g])
    # x₁ = x₀ − lr·g, by hand.
    assert x.detach().tolist() == [1.0 - 0.1 * 0.5, -2.0 - 0.1 * -2.5, 3.0 - 0.1 * 2.5]
    assert opt.update_count == 1
    # A NaN gradient changes nothing and says so.
    before = x.detach().clone()
    assert not opt.apply([torch.tensor([float("nan"), 0.0, 0.0], dtype=torch.float64)])
    assert torch.equal(x.detach(), before)


def test_step_returns_the_batchs_monitors_before_the_update():
    x = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    opt = downhill.build("sgd", loss=lambda t: ((x - t) ** 2).sum() / 2, params=[x],
                         learning_rate=0.25)
    monitors = opt.step(torch.tensor([1.0], dtype=torch.float64))
    assert monitors == {"loss": 0.5}  # ½(2 − 1)², before the update
    assert x.item() == 2.0 - 0.25 * 1.0


def test_build_without_params_finds_the_leaves_of_the_graph():
    u, v, y, loss = factorization_problem()
    opt = downhill.build("adam", loss)
    assert repr(opt).endswith("parameters not found yet)")
    opt.step(y)
    names = [name for name, _ in opt.params]
    assert names == ["unnamed0", "unnamed1"]
    assert {t.data_ptr() for _, t in opt.params} == {u.data_ptr(), v.data_ptr()}


def test_loss_may_return_monitors_as_a_dict():
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def loss(t):
        err = x - t
        return err.square().sum(), {"max": err.abs().max(), "const": 2.5}

    opt = downhill.build("sgd", loss, [x], learning_rate=0.1)
    monitors = opt.evaluate([torch.ones(4, 3, dtype=torch.float64)])
    assert monitors == {"loss": 12.0, "max": 1.0, "const": 2.5}  # twelve (0 − 1)²


def test_datasets_from_arrays_tensors_sparse_matrices_and_callables():
    array = np.arange(12.0).reshape(6, 2)
    data = downhill.Dataset([array], batch_size=2, shuffle=False)
    assert data.slice_count == 3 and data.iteration_size == 3
    first = data.next()[0]
    assert first.tolist() == [[0.0, 1.0], [2.0, 3.0]]
    first[0, 0] = 100.0  # a view of the NumPy array: no copy was made
    assert array[0, 0] == 100.0

    tensor = torch.arange(10.0)
    data = downhill.Dataset(tensor, batch_size=4, shuffle=False, name="t")
    assert data.slice_count == 3 and data.name == "t"

    dense = np.array([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [4.0, 5.0, 0.0]])
    data = downhill.Dataset([scipy.sparse.csr_matrix(dense)], batch_size=2, shuffle=False)
    batch = data.next()[0]
    assert batch.layout == torch.sparse_coo
    assert batch.to_dense().tolist() == dense[:2].tolist()

    calls = []
    data = downhill.Dataset(lambda: calls.append(1) or torch.ones(2), iteration_size=5)
    assert data.iteration_size == 5
    assert data.next()[0].tolist() == [1.0, 1.0] and len(calls) == 1

    # The same seed shuffles alike; an int, a torch.Generator or a NumPy generator.
    orders = []
    for rng in (7, 7, torch.Generator().manual_seed(7), np.random.default_rng(1)):
        data = downhill.Dataset([torch.arange(10.0)], batch_size=1, rng=rng)
        orders.append([data.next()[0].item() for _ in range(10)])
    assert orders[0] == orders[1] and sorted(orders[0]) == list(range(10))


def test_iterate_settings_apply_to_that_run_and_stay():
    x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = downhill.build("sgd", lambda t: (x - t).square().sum(), [x], learning_rate=0.1)
    data = downhill.Dataset([torch.ones(1, 2, dtype=torch.float64)], batch_size=1)
    passes = sum(1 for _ in opt.iterate(data, learning_rate=0.5, max_passes=2, patience=100))
    assert passes == 2
    assert opt.options["learning_rate"] == 0.5 and opt.options["max_passes"] == 2
    # x after two steps of x ← x − 0.5·2(x − 1): 0 → 1 → 1.
    assert x.tolist() == [1.0, 1.0]


class CountValidations(downhill.Callback):
    def __init__(self, limit):
        super().__init__()
        self.limit = limit
        self.seen = []

    def on_validation(self, run):
        self.seen.append((run.validations, run.monitors["loss"]))
        if run.validations == self.limit:
            self.request_stop(f"{self.limit} validations")


def test_a_python_callback_sees_validations_and_stops_the_run():
    u, v, y, loss = factorization_problem()
    callback = CountValidations(3)
    result = downhill.minimize(loss, [y], params=[u, v], batch_size=20, validate_every=1,
                               patience=100, callbacks=[callback])
    assert [n for n, _ in callback.seen] == [1, 2, 3]
    assert result.last_run.stop == "callback"
    assert result.last_run.stop_detail == "3 validations"


def test_ctrl_c_stops_the_loop_and_restores_the_best_parameters():
    u, v, y, loss = factorization_problem()
    calls = {"n": 0}

    def interrupting_loss(z):
        calls["n"] += 1
        if calls["n"] == 30:
            os.kill(os.getpid(), signal.SIGINT)
        return loss(z)

    handler = signal.getsignal(signal.SIGINT)
    result = downhill.minimize(interrupting_loss, [y], params=[u, v], batch_size=20,
                               validate_every=1, patience=1000, learning_rate=0.05)
    assert result.last_run.stop == "interrupted"
    assert loss(y).item() == pytest.approx(result.last_run.best["loss"], rel=1e-12)
    assert signal.getsignal(signal.SIGINT) is handler  # Python's handler is back


def test_current_phase_tells_training_from_validation():
    x = torch.zeros(1, requires_grad=True)
    phases = []

    def loss(t):
        phases.append(downhill.current_phase())
        return (x - t).square().sum()

    opt = downhill.build("sgd", loss, [x], learning_rate=0.1)
    opt.step(torch.ones(1))
    opt.evaluate([torch.ones(1, 1)])
    assert phases == ["training", "validation"]
    assert downhill.current_phase() == "none"


def test_log_lines_go_through_pythons_logging(caplog):
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    with caplog.at_level("INFO", logger="downhill"):
        downhill.minimize(lambda t: (x - t).square().sum(), [torch.ones(1, 1, dtype=torch.float64)],
                          params=[x], algo="sgd", learning_rate=0.1, max_passes=2)
    assert any(record.name == "downhill" and "SGD" in record.getMessage()
               for record in caplog.records)


def test_parameter_groups_with_their_own_settings_and_a_frozen_group_first():
    a = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = downhill.build("sgd", params=[{"params": [a], "frozen": True},
                                        {"params": {"b": b}, "learning_rate": 0.5},
                                        {"params": [c]}], learning_rate=0.1)
    # The first group not frozen leads: b, then a (frozen), then c; unnamed tensors are named
    # by their place among all the tensors given (a first, c third).
    assert [name for name, _ in opt.params] == ["b", "param0", "param2"]
    assert opt.apply([torch.ones(3, dtype=torch.float64), None, torch.ones(1, dtype=torch.float64)])
    # x ← x − lr·1, each group's own rate, by hand; the frozen one untouched.
    assert b.tolist() == [-0.5] * 3 and c.tolist() == [-0.1] and a.tolist() == [0.0, 0.0]
