"""Every public name of the package is documented, and help() shows the settings."""

import inspect

import downhill
import downhill.optim


def public_members(owner):
    for name, member in inspect.getmembers(owner):
        if not name.startswith("_"):
            yield name, member


def test_every_public_name_has_a_docstring():
    missing = []
    for module in (downhill, downhill.optim):
        for name in module.__all__:
            value = getattr(module, name)
            if not isinstance(value, (list, dict)) and not (value.__doc__ or "").strip():
                missing.append(f"{module.__name__}.{name}")
            if inspect.isclass(value) and value.__module__.startswith("downhill"):
                for member_name, member in public_members(value):
                    if inspect.isclass(value) and issubclass(value, Exception):
                        continue
                    if callable(member) or isinstance(member, property):
                        if not (getattr(member, "__doc__", "") or "").strip():
                            missing.append(f"{module.__name__}.{name}.{member_name}")
    assert not missing, "undocumented: " + ", ".join(missing)


def test_help_of_minimize_lists_the_settings_with_their_meaning():
    text = downhill.minimize.__doc__
    assert "patience" in text and "Validations without improvement" in text
    assert "learning_rate_schedule" in text and "max_updates" in text
