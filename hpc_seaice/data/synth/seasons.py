"""Seasonal curves of the synthetic Arctic: extent target, summer and winter weights, thickness.

Why the extent follows the 2010s NSIDC monthly means: the metrics look at the ice edge and the
marginal ice zone month by month, so the seasonal cycle must have the observed shape (a slow
retreat in spring, a fast one in July-August, a fast freeze-up in October-November), not just
the right maximum and minimum. The target is the smooth curve (four annual harmonics) whose
monthly means match the NSIDC sea-ice index monthly means of 2010-2019 (rounded, million km^2)
within 0.006 of the seasonal range; the model domain (the neXtSIM crop) then carries that
extent of ice, plus an interannual anomaly and a weak decline added by the generator.
"""

from __future__ import annotations

import math

import numpy as np

YEAR_DAYS = 365.25
# NSIDC sea-ice index, Arctic monthly mean extent 2010-2019, January..December, 1e6 km^2 (rounded)
NSIDC_2010S_EXTENT = (13.5, 14.4, 14.6, 14.0, 12.8, 11.0, 8.2, 5.6, 4.7, 6.8, 9.8, 12.0)
HARMONICS = 4
TREND_PER_YEAR = -0.05  # 1e6 km^2 per year, about half the observed September decline
TREND_ORIGIN = "2013-07-01"  # the decline is zero here (the middle of the default 2009-2018 span)
_MONTH_STARTS = np.array([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365]) * YEAR_DAYS / 365.0


def smoothstep(x: np.ndarray | float, lo: float, hi: float) -> np.ndarray:
    t = np.clip((np.asarray(x, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def day_of_year(times: np.ndarray) -> np.ndarray:
    t = np.asarray(times).astype("datetime64[s]")
    return (t - t.astype("datetime64[Y]")).astype(np.float64) / 86400.0


def _harmonic_coefficients() -> np.ndarray:
    """Least-squares harmonics whose means over each calendar month match the NSIDC values."""
    a, b = _MONTH_STARTS[:-1], _MONTH_STARTS[1:]
    cols = [np.ones(12)]
    for k in range(1, HARMONICS + 1):
        w = 2.0 * math.pi * k / YEAR_DAYS
        cols.append((np.sin(w * b) - np.sin(w * a)) / (w * (b - a)))  # month mean of cos(w t)
        cols.append((np.cos(w * a) - np.cos(w * b)) / (w * (b - a)))  # month mean of sin(w t)
    return np.linalg.lstsq(np.stack(cols, axis=1), np.asarray(NSIDC_2010S_EXTENT), rcond=None)[0]


_COEF = _harmonic_coefficients()


def seasonal_extent(doy: np.ndarray | float) -> np.ndarray:
    """The seasonal extent curve (1e6 km^2) at a day of year (0 = 1 January, 00:00)."""
    t = np.asarray(doy, dtype=np.float64)
    out = np.full(t.shape, _COEF[0])
    for k in range(1, HARMONICS + 1):
        w = 2.0 * math.pi * k / YEAR_DAYS
        out = out + _COEF[2 * k - 1] * np.cos(w * t) + _COEF[2 * k] * np.sin(w * t)
    return out


def extent_climatology(times: np.ndarray) -> np.ndarray:
    """Target extent (1e6 km^2) without interannual noise: the 2010s cycle and a weak decline."""
    t = np.asarray(times).astype("datetime64[s]")
    years = (t - np.datetime64(TREND_ORIGIN, "s")).astype(np.float64) / (86400.0 * YEAR_DAYS)
    return seasonal_extent(day_of_year(t)) + TREND_PER_YEAR * years


def summer_weight(doy: np.ndarray) -> np.ndarray:
    """0 in the cold season, 1 from late June to mid September (melt ponds, loose pack)."""
    doy = np.asarray(doy, dtype=np.float64)
    return smoothstep(doy, 135.0, 175.0) * (1.0 - smoothstep(doy, 262.0, 300.0))


def winter_weight(doy: np.ndarray) -> np.ndarray:
    """1 from January to April (land-fast ice in place), 0 from July to November."""
    doy = np.asarray(doy, dtype=np.float64)
    return smoothstep(doy, 335.0, 365.0) + smoothstep(doy, -30.0, 0.0) * (1.0 - smoothstep(doy, 130.0, 175.0))


def thickness_cycle(doy: np.ndarray) -> np.ndarray:
    """Multiplier of the floe thickness: maximum at the end of April, minimum in late October.

    Thermodynamic growth goes on until the melt starts (late April / May), the pack thins
    through the summer and the thin new ice of the freeze-up keeps the mean low into autumn.
    """
    return 1.0 + 0.2 * np.cos(2.0 * math.pi * (np.asarray(doy, dtype=np.float64) - 125.0) / YEAR_DAYS)


def miz_width_km(doy: np.ndarray | float) -> np.ndarray:
    """Width (km) of the concentration ramp from the ice edge (0.15) to the pack.

    The marginal ice zone (0.15 <= sic <= 0.8) is about 0.38 of it: narrow in winter, about
    about twice as wide from July to September, when the pack is loose and melting.
    """
    return 350.0 * (1.0 + 0.8 * summer_weight(doy))
