"""Units read, not assumed: each variable's ``units`` attribute converted to the project's units.

The project stores and scores ``sit`` in m, ``sic`` and ``damage`` as fractions (``1``) and the
velocities in m s-1 (:data:`~hpc_seaice.data.format.variables.UNITS`). Files from elsewhere may
hold thickness in cm, concentration in %, velocities in km/day or cm/s: ``data convert`` and
``evaluate`` read every variable's ``units`` with pint and cf_xarray's registry of CF unit strings
(``m s-1``, ``km d-1``, ``%``, ``1``) and multiply by the factor to the project's unit. All these
units are multiplicative (no offset), so one factor per variable and file is exact.

A missing or empty ``units`` (empty is not a CF spelling of "dimensionless": it is taken as
unknown, since a concentration in % and one in 1 would read the same), a string pint does not
know, or units of another dimension (thickness in m s-1) are one line naming the file and the
variable. ``--assume-units`` states units instead: ``sit=cm,sic=%`` for the variables named, or
alone for the project's units of all five; what it states replaces the file's attribute.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from hpc_seaice.data.format.variables import UNITS, VARIABLES
from hpc_seaice.errors import UserError

PROJECT = "project"  # ``--assume-units`` given alone: the project's units for every variable
ASSUME_HELP = (
    "units to use instead of the files' 'units' attributes, e.g. sit=cm,sic=%% (target names "
    "sit, sic, damage, siu, siv; CF unit strings); alone: the project's units (m, 1, 1, m s-1) for all"
)


@functools.cache
def _registry() -> Any:
    """cf_xarray's pint registry (CF unit strings such as ``m s-1``, ``%``, ``1``); imported once, when needed."""
    pint_log = logging.getLogger("pint.util")  # cf_xarray redefines a few units; pint logs each as a warning
    level = pint_log.level
    pint_log.setLevel(logging.ERROR)
    try:
        from cf_xarray.units import units
    finally:
        pint_log.setLevel(level)
    return units


def _factor(units: str, name: str) -> float:
    """The factor from ``units`` to the project's unit of ``name``; ValueError with the reason."""
    import pint

    registry = _registry()
    try:
        quantity = registry.Quantity(1.0, units)
        return float(quantity.to(registry.Unit(UNITS[name])).magnitude)
    except pint.DimensionalityError:
        raise ValueError(f"units {units!r} are not convertible to {UNITS[name]!r}") from None
    except Exception:  # noqa: BLE001 - UndefinedUnitError, tokenizer and parser errors of odd strings
        raise ValueError(f"units {units!r} are not a unit string pint knows") from None


def parse_assume_units(text: str | None) -> dict[str, str]:
    """``--assume-units``: None -> {}; ``project`` (the option alone) -> every variable's project unit;
    ``sit=cm,sic=%`` -> those variables' units, each checked to convert to the project's unit."""
    if text is None:
        return {}
    if text == PROJECT:
        return dict(UNITS)
    assumed: dict[str, str] = {}
    for item in text.split(","):
        name, sep, units = (part.strip() for part in item.partition("="))
        if not sep or name not in VARIABLES or not units:
            raise UserError(f"--assume-units: {item!r} is not NAME=UNITS with NAME one of {', '.join(VARIABLES)}")
        try:
            _factor(units, name)
        except ValueError as exc:
            raise UserError(f"--assume-units {name}={units}: {exc} ({name})") from None
        assumed[name] = units
    return assumed


def to_project_factor(
    where: str, name: str, attrs: Mapping[str, Any], assumed: Mapping[str, str], source_name: str | None = None
) -> float:
    """The factor that takes variable ``name`` (called ``source_name`` in the file ``where``) to the
    project's unit: from ``assumed`` when it names the variable, else from the ``units`` attribute."""
    label = f"{name!r}" if source_name in (None, name) else f"{source_name!r} ({name})"
    units = assumed.get(name)
    if units is None:
        units = str(attrs.get("units", "")).strip()
        if not units:
            raise UserError(
                f"{where}: variable {label} has no units attribute; state them with --assume-units "
                f"{name}=UNITS (or --assume-units alone for the project's {UNITS[name]!r})"
            )
    try:
        return _factor(units, name)
    except ValueError as exc:
        raise UserError(f"{where}: variable {label}: {exc}; state them with --assume-units {name}=UNITS") from None
