"""The fixed variable conventions of the neXtSIM fields (docs/science.md §1).

Channel order is fixed everywhere: thickness, concentration, damage, two velocities.
"""

import math

VARIABLES: tuple[str, ...] = ("sit", "sic", "damage", "siu", "siv")
LONG_NAMES: dict[str, str] = {
    "sit": "sea-ice thickness",
    "sic": "sea-ice concentration",
    "damage": "sea-ice damage",
    "siu": "sea-ice velocity, x component",
    "siv": "sea-ice velocity, y component",
}
UNITS: dict[str, str] = {"sit": "m", "sic": "1", "damage": "1", "siu": "m s-1", "siv": "m s-1"}
# Physical bounds (lower, upper); +-inf means unbounded on that side.
BOUNDS: dict[str, tuple[float, float]] = {
    "sit": (0.0, math.inf),
    "sic": (0.0, 1.0),
    "damage": (0.0, 1.0),
    "siu": (-math.inf, math.inf),
    "siv": (-math.inf, math.inf),
}
# Marginal ice zone: 0.15 <= sic <= 0.8 (conventional definition).
MIZ_RANGE: tuple[float, float] = (0.15, 0.8)
# A cell counts as ice-covered when sic >= this threshold (conventional 15 %).
ICE_COVER_THRESHOLD: float = 0.15
