"""Keyword arguments as settings of the settings table (the library's one list of settings)."""

import difflib
import math

from . import _downhill

#: Every row of the settings table: name, scope, doc, choices, takes, default, aliases.
TABLE = _downhill.settings_table()
_ROWS = {row["name"]: row for row in TABLE}
_ALIASES = {alias: row["name"] for row in TABLE for alias in row["aliases"]}
#: Keywords that set a setting of the table in other terms: Adam's betas as PyTorch gives them.
DERIVED = {
    "beta1": "Adam's beta1 as PyTorch gives it; sets beta1_halflife to ln 2 / -ln beta1.",
    "beta2": "Adam's beta2 as PyTorch gives it; sets beta2_halflife to ln 2 / -ln beta2.",
}
#: Every setting keyword: the table's names, their other names and the derived ones.
NAMES = sorted(set(_ROWS) | set(_ALIASES) | set(DERIVED))


def halflife_of_beta(beta):
    """The half-life (in updates) of an average whose weight per update is `beta` in (0, 1)."""
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not 0 < beta < 1:
        raise ValueError(f"beta must be a number in (0, 1), not {beta!r}")
    return math.log(2.0) / -math.log(beta)


def unknown(name, where, known=NAMES):
    """The TypeError of an unknown keyword `name` given to `where`, naming the closest one."""
    message = f"{where}() got an unexpected keyword argument '{name}'"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        message += f"; did you mean '{close[0]}'?"
    return TypeError(message)


def normalize(keywords, where):
    """The settings of `keywords` by the table's names; TypeError for an unknown keyword."""
    settings = {}
    for name, value in keywords.items():
        if name in DERIVED:
            settings[name + "_halflife"] = halflife_of_beta(value)
        elif name in _ROWS or name in _ALIASES:
            settings[_ALIASES.get(name, name)] = value
        else:
            raise unknown(name, where)
    return settings


def options(settings):
    """A library Options holding `settings` (table names); TypeError for a wrong type."""
    result = _downhill.Options()
    for name, value in settings.items():
        result.set(name, value)
    return result


def default(name):
    """The table's default of setting `name`."""
    return _ROWS[_ALIASES.get(name, name)]["default"]


def describe():
    """The settings as text, one paragraph each, for docstrings."""
    lines = []
    for row in TABLE:
        names = " (or " + ", ".join(row["aliases"]) + ")" if row["aliases"] else ""
        lines.append(f"    {row['name']}{names}: {row['takes']}, default {row['default']!r}. "
                     f"{row['doc']}")
    for name, doc in DERIVED.items():
        lines.append(f"    {name}: a number. {doc}")
    return "\n".join(lines)
