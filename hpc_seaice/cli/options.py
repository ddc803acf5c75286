"""Parsed command-line options handed, by name, to the library function a command drives.

A command such as ``data synth`` or ``evaluate`` calls one library function whose keyword
parameters are named like the command's options (``--shard-size`` -> ``shard_size``). Passing
them by name through one helper keeps the option list in one place (the parser) instead of a
second, hand-copied list in every command; the library function itself takes typed parameters
and never sees the parsed-argument object.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any


def options_for(func: Callable[..., Any], args: argparse.Namespace, **values: object) -> dict[str, Any]:
    """The options in ``args`` that name a parameter of ``func``, updated by ``values``.

    Options that ``func`` does not take (the sub-command's name, options of the runner) are
    left out; ``values`` gives parameters whose value is not the option as parsed. The values
    are whatever the parser produced for each option (hence ``Any``: each has the type of its
    own option).
    """
    params = inspect.signature(func).parameters
    unknown = set(values) - set(params)
    if unknown:
        raise TypeError(f"{func.__name__} has no parameter(s) {sorted(unknown)}")
    return {**{k: v for k, v in vars(args).items() if k in params}, **values}
