"""The study's three findings, stated as measured lines from an evaluation's ``metrics.json``.

Each finding is a fixed, written-down criterion applied to the numbers ``evaluate`` measured, and
the verdict is "holds" or "does not hold in this run", never a hoped-for result:

1. the LDMs reach scores similar to data-space diffusion: every variable's ensemble CRPS of each
   LDM is within a factor :data:`SIMILAR_FACTOR` of the data-space model's;
2. the LDMs smooth the fields and the smoothing comes from the latent mapping: in the finest
   wavelength band that holds spectral rings, each LDM's thickness-PSD log-ratio to the test set is
   below :data:`SMOOTH_LOG10` (it lost power) and below the data-space model's, and so is the
   log-ratio of its own VAE's reconstructions of test states (the autoencoder alone loses it);
3. censoring improves the marginal ice zone: the censored LDM has a lower ice-cover calibration
   error and a smaller distance (Wasserstein-1) between its MIZ-area distribution and the test
   set's than the Gaussian LDM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hpc_seaice.data.format.variables import VARIABLES

SIMILAR_FACTOR = 1.5  # CRPS ratios in [1/1.5, 1.5] count as "similar"
SMOOTH_LOG10 = -0.1  # a band log10-ratio below this lost at least ~20 % of the test set's power
BAND_ORDER = ("small", "meso", "large")  # finest first; the key of each band starts with its name


@dataclass
class Finding:
    title: str
    holds: bool
    lines: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "holds" if self.holds else "does not hold in this run"


@dataclass
class Roles:
    """Which evaluated entries play which part (names as in ``metrics.json``)."""

    data_space: str
    ldm_censored: str
    ldm_gaussian: str
    vae_censored: str | None = None
    vae_gaussian: str | None = None

    def ldms(self) -> list[tuple[str, str | None]]:
        return [(self.ldm_censored, self.vae_censored), (self.ldm_gaussian, self.vae_gaussian)]


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def fmt(value: object, spec: str) -> str:
    """``value`` formatted by ``spec`` when it is a finite number; "n/a" for anything else (None, NaN, text)."""
    return format(value, spec) if _finite(value) else "n/a"


def finest_band(bands: dict[str, Any]) -> str | None:
    """The key of the finest-scale band with a finite value (grids coarser than ~50 km have no
    rings below 100 km, so the finest available band is where smoothing can show)."""
    for prefix in BAND_ORDER:
        for key, value in bands.items():
            if key.startswith(prefix) and _finite(value):
                return key
    return None


def crps_similarity(metrics: dict[str, Any], roles: Roles) -> Finding:
    models = metrics["models"]
    reference = models[roles.data_space]["variables"]
    lines, holds = [], True
    for ldm, _ in roles.ldms():
        ratios = []
        for var in VARIABLES:
            ldm_crps, data_crps = models[ldm]["variables"][var]["crps"], reference[var]["crps"]
            ratio = ldm_crps / data_crps if _finite(ldm_crps) and _finite(data_crps) and data_crps > 0 else math.nan
            ratios.append(f"{var} {fmt(ratio, '.2f')}")
            holds &= 1 / SIMILAR_FACTOR <= ratio <= SIMILAR_FACTOR
        lines.append(f"CRPS of {ldm} / CRPS of {roles.data_space}: " + ", ".join(ratios))
    title = f"The LDMs reach scores similar to data space (every CRPS ratio within x{SIMILAR_FACTOR})"
    return Finding(title, holds, lines)


def smoothing(metrics: dict[str, Any], roles: Roles) -> Finding:
    models, recs = metrics["models"], metrics.get("reconstructions", {})
    data_bands = models[roles.data_space]["psd_sit_band_log10_ratio"]
    band = finest_band(data_bands)
    title = (
        "The LDMs smooth the fields and the smoothing comes from the latent mapping "
        f"(finest-band PSD log10-ratio below {SMOOTH_LOG10} and below data space, for the LDM and its VAE)"
    )
    if band is None:
        return Finding(title, False, ["no wavelength band holds spectral rings on this grid"])
    data_value = data_bands[band]
    lines = [f"band {band}: thickness PSD log10-ratio to the test set; {roles.data_space} {data_value:+.2f}"]
    holds = True
    for ldm, vae in roles.ldms():
        value = models[ldm]["psd_sit_band_log10_ratio"].get(band)
        rec = recs.get(vae, {}).get("psd_sit_band_log10_ratio", {}).get(band) if vae else None
        holds &= _finite(value) and value < SMOOTH_LOG10 and value < data_value
        holds &= _finite(rec) and rec < SMOOTH_LOG10
        lines.append(f"{ldm} {fmt(value, '+.2f')}; reconstructions of its VAE ({vae or 'none'}) {fmt(rec, '+.2f')}")
    return Finding(title, holds, lines)


def censoring_and_miz(metrics: dict[str, Any], roles: Roles) -> Finding:
    models = metrics["models"]
    cens, gauss = models[roles.ldm_censored], models[roles.ldm_gaussian]
    lines, holds = [], True
    for key, label in (("error", "calibration error (cell-weighted)"), ("partial_error", "error where 0 < p_test < 1")):
        a, b = cens["cover_calibration"].get(key), gauss["cover_calibration"].get(key)
        lines.append(f"{label}: censored {fmt(a, '.3f')}, Gaussian {fmt(b, '.3f')}")
        if key == "error":
            holds &= _finite(a) and _finite(b) and a < b
    a, b = cens["miz_area_wasserstein_km2"], gauss["miz_area_wasserstein_km2"]
    lines.append(
        f"MIZ-area distance to the test set (Wasserstein-1): censored {fmt(a, '.4g')} km^2, "
        f"Gaussian {fmt(b, '.4g')} km^2"
    )
    holds &= _finite(a) and _finite(b) and a < b
    title = "Censoring improves the marginal ice zone (lower calibration error and MIZ-area distance)"
    return Finding(title, holds, lines)


def paper_findings(metrics: dict[str, Any], roles: Roles) -> list[Finding]:
    """The three findings, in the study's order."""
    return [crps_similarity(metrics, roles), smoothing(metrics, roles), censoring_and_miz(metrics, roles)]


def render_findings(findings: list[Finding]) -> list[str]:
    """Markdown lines: one numbered finding with its verdict, its measured numbers below it."""
    lines = []
    for i, finding in enumerate(findings, 1):
        lines.append(f"{i}. **{finding.title}: {finding.verdict}.**")
        lines.extend(f"   - {line}" for line in finding.lines)
    return lines
