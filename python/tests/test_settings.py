"""Every setting of the table as a keyword, and errors as Python exceptions."""

import math

import pytest
import torch

import downhill
from downhill import _settings

# Values for the settings whose text or meaning a generated value would not fit.
SPECIAL = {
    "algo": "adam",
    "monitor": "err",
    "monitor_mode": "max",
    "lbfgs_line_search": "none",
}


def candidates(row, tmp_path):
    """Values of another value than the default, for the setting of `row`."""
    name, default = row["name"], row["default"]
    if name in SPECIAL:
        return [SPECIAL[name]]
    if name in ("checkpoint", "history"):
        return [str(tmp_path / name)]
    if row["choices"]:
        return [c for c in row["choices"] if c != default]
    if isinstance(default, bool):
        return [not default]
    if isinstance(default, int):
        return [default + 1, default + 2]
    if isinstance(default, float):
        return [default * 1.5, default * 0.5, 0.5, 0.25] if default else [0.5, 0.25]
    if default is None and "callable" in row["takes"]:
        return [lambda update: 0.5]
    if default is None and "int" in row["takes"]:
        return [3]
    return []


def test_every_setting_of_the_table_is_a_keyword(tmp_path):
    x = torch.zeros(2, requires_grad=True)
    checked = []
    for row in downhill.SETTINGS_TABLE:
        name = row["name"]
        if name == "process_group":  # a c10d group object: C++ only
            with pytest.raises(TypeError, match="process_group"):
                _settings.options({name: object()})
            continue
        accepted = None
        for value in candidates(row, tmp_path):
            extra = {"checkpoint": str(tmp_path / "c")} if name.startswith("resume") else {}
            try:
                _settings.options({name: value, **extra}).validate()
            except ValueError:
                continue
            accepted = value
            break
        assert accepted is not None, f"no valid value found for {name}"
        if row["scope"] == "distributed" or name == "algo":
            # Not built (distributed=True would join torchrun): read back from the options.
            read = _settings.options({name: accepted}).get(name)
        else:
            opt = downhill.build("sgd", lambda t: x.sum(), [x], **{name: accepted, **extra})
            read = opt.options[name]
        if callable(accepted):
            assert read(4) == 0.5
        else:
            assert read == accepted, name
        checked.append(name)
    assert len(checked) == len(downhill.SETTINGS_TABLE) - 1
    assert "learning_rate" in checked and "rms_halflife" in checked and "lbfgs_history" in checked


def test_other_names_and_betas():
    x = torch.zeros(2, requires_grad=True)
    opt = downhill.build("adam", params=[x], max_updates=3, beta1=0.9, beta2=0.999)
    assert opt.options["max_passes"] == 3
    assert opt.options["beta1_halflife"] == math.log(2.0) / -math.log(0.9)
    assert opt.options["beta2_halflife"] == math.log(2.0) / -math.log(0.999)


def test_unknown_keyword_is_a_type_error_naming_the_closest():
    x = torch.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match="'learnig_rate'.*did you mean 'learning_rate'"):
        downhill.build("sgd", params=[x], learnig_rate=0.1)
    with pytest.raises(TypeError, match="'patiense'.*did you mean 'patience'"):
        downhill.minimize(lambda t: x.sum(), [torch.ones(2, 2)], params=[x], patiense=3)
    opt = downhill.build("sgd", params=[x])
    with pytest.raises(TypeError, match="did you mean 'momentum'"):
        opt.change_options(momentun=0.5)


def test_wrong_type_is_a_type_error_and_a_bad_value_a_value_error():
    x = torch.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match="'momentum' takes a number"):
        downhill.build("sgd", params=[x], momentum="fast")
    with pytest.raises(TypeError, match="'nesterov' takes a bool"):
        downhill.build("sgd", params=[x], nesterov=1)
    with pytest.raises(ValueError, match="learning_rate"):
        downhill.build("sgd", params=[x], learning_rate=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        downhill.build("sgd", params=[x], momentum=1.5)


def test_library_errors_keep_their_python_types():
    x = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="unknown algorithm.*adam"):
        downhill.build("adamm", params=[x])
    opt = downhill.build("sgd", params=[x])
    with pytest.raises(ValueError, match="it must match the parameter"):
        opt.apply([torch.zeros(3)])
    lbfgs = downhill.build("lbfgs", lambda t: x.square().sum(), [x])
    with pytest.raises(RuntimeError, match="L-BFGS"):
        lbfgs.apply([torch.zeros(2)])
    with pytest.raises(RuntimeError, match="without a loss|needs a loss|loss"):
        opt.step(torch.zeros(2))


def test_a_python_exception_in_the_loss_comes_back_as_itself():
    x = torch.zeros(2, requires_grad=True)

    def loss(t):
        if downhill.current_phase() == "training":  # the validation before pass 1 succeeds
            raise KeyError("no such column")
        return x.sum()

    with pytest.raises(KeyError, match="no such column") as raised:
        downhill.minimize(loss, [torch.ones(4, 2)], params=[x], algo="sgd")
    assert any("pass 1, batch 1" in note for note in getattr(raised.value, "__notes__", []))
    with pytest.raises(TypeError, match="scalar tensor"):
        downhill.build("sgd", lambda t: "one", [x]).step(torch.ones(2))


def test_divergence_is_a_divergence_error_with_the_best_parameters_back():
    x = torch.ones(2, requires_grad=True)
    calls = {"n": 0}

    def loss(t):
        calls["n"] += 1
        value = (x - t).square().sum()
        return value * float("nan") if calls["n"] > 3 else value

    with pytest.raises(downhill.DivergenceError, match="3 consecutive|skipped"):
        downhill.minimize(loss, [torch.zeros(1, 2)], params=[x], algo="sgd", max_nonfinite=3,
                          validate_every=1, batch_size=1)
    assert issubclass(downhill.DivergenceError, RuntimeError)
    assert torch.isfinite(x).all()


def test_help_documents_every_setting():
    text = downhill.build.__doc__
    for row in downhill.SETTINGS_TABLE:
        assert row["name"] in text
    assert "beta1" in text
