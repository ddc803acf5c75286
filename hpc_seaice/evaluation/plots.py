"""Figures of the evaluation report (the paper's Figs 1-5), written as PNG with matplotlib (Agg).

Each function takes plain arrays, writes one file and returns its path, so that the figures can
be redrawn from ``metrics.json`` without re-running the evaluation. Land is drawn grey from the
mask; colour limits of the map panels come from the reference (test) row so that every model is
judged on the same scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402

from hpc_seaice.data.geo.deformation import SECONDS_PER_DAY, Spacing, speed, total_deformation  # noqa: E402

LAND_COLOUR = "#c9b99b"  # muted tan: distinct from every colour map used here
REFERENCE_COLOUR = "black"
FLOOR_COLOUR = "0.6"  # grey: the floor (validation states scored like a model), as the paper's validation curve
MODEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def model_colour(i: int) -> str:
    return MODEL_COLOURS[i % len(MODEL_COLOURS)]


def _cmap(name: str) -> mcolors.Colormap:
    return plt.get_cmap(name).with_extremes(bad=LAND_COLOUR)


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folder created) and close it; every figure goes through here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def map_panels(
    fields: np.ndarray, mask: np.ndarray, dx_m: Spacing, dy_m: Spacing, channels: dict[str, int]
) -> dict[str, np.ndarray]:
    """The four mapped quantities of one state ``[C, H, W]``; NaN on land (and off-stencil)."""
    ocean = np.asarray(mask) > 0.5
    sit = np.where(ocean, fields[channels["sit"]], np.nan)
    sic = np.where(ocean, fields[channels["sic"]], np.nan)
    u, v = fields[channels["siu"]], fields[channels["siv"]]
    spd = np.where(ocean, speed(u, v), np.nan)
    deform = total_deformation(u, v, dx_m, dy_m, mask=mask) * SECONDS_PER_DAY
    return {"sit": sit, "sic": sic, "speed": spd, "deformation": deform}


def _finite_percentile(x: np.ndarray, q: float, default: float) -> float:
    finite = x[np.isfinite(x)]
    return float(np.percentile(finite, q)) if finite.size else default


def plot_maps(
    path: str | Path,
    rows: Sequence[tuple[str, np.ndarray]],
    mask: np.ndarray,
    dx_m: Spacing,
    dy_m: Spacing,
    channels: dict[str, int],
) -> Path:
    """Maps of thickness, concentration, speed and total deformation, one row per source.

    Args:
        rows: ``(label, fields [C, H, W])``; the first row is the reference and sets the colour
            limits.
        dx_m, dy_m: grid spacings in m, per cell ``[H, W]`` or one number.
        channels: channel index of ``sit``, ``sic``, ``siu``, ``siv``.
    """
    panels = [(label, map_panels(f, mask, dx_m, dy_m, channels)) for label, f in rows]
    ref = panels[0][1]
    sit_max = max(_finite_percentile(ref["sit"], 99.5, 1.0), 1e-3)
    speed_max = max(_finite_percentile(ref["speed"], 99.5, 0.1), 1e-6)
    # Deformation limits from the deforming cells only: open water and rigid ice are exactly 0.
    deforming = np.where(ref["deformation"] > 0, ref["deformation"], np.nan)
    d_hi = max(_finite_percentile(deforming, 99.5, 1.0), 1e-6)
    d_lo = min(max(_finite_percentile(deforming, 5.0, d_hi * 1e-3), d_hi * 1e-3), d_hi / 10)
    columns = [
        ("sit", "thickness (m)", _cmap("Blues_r"), mcolors.Normalize(0.0, sit_max)),
        ("sic", "concentration", _cmap("bone"), mcolors.Normalize(0.0, 1.0)),
        ("speed", "speed (m/s)", _cmap("viridis"), mcolors.Normalize(0.0, speed_max)),
        ("deformation", "total deformation (1/day)", _cmap("magma"), mcolors.LogNorm(d_lo, d_hi)),
    ]
    n_rows = len(panels)
    fig, axes = plt.subplots(n_rows, 4, figsize=(13, 3.1 * n_rows + 0.4), squeeze=False)
    for r, (label, data) in enumerate(panels):
        for c, (key, title, cmap, norm) in enumerate(columns):
            ax = axes[r, c]
            values = data[key]
            if key == "deformation":  # zero (and tiny) deformation at the bottom of the log scale
                values = np.where(np.isfinite(values), np.maximum(values, d_lo), np.nan)
            image = ax.imshow(np.ma.masked_invalid(values), origin="lower", cmap=cmap, norm=norm)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=10)
            if c == 0:
                ax.set_ylabel(label, fontsize=10)
            if r == n_rows - 1:
                bar = fig.colorbar(image, ax=axes[:, c], orientation="horizontal", fraction=0.04, pad=0.02)
                if key == "deformation":  # a few labelled ticks: log minor labels overlap on short ranges
                    bar.ax.xaxis.set_minor_formatter(mticker.NullFormatter())
                    bar.set_ticks(np.geomspace(d_lo, d_hi, 4), labels=[f"{t:.2g}" for t in np.geomspace(d_lo, d_hi, 4)])
    return save_figure(fig, path)


def plot_spectra(
    path: str | Path,
    wavelength_km: np.ndarray,
    curves: Sequence[tuple[str, np.ndarray, str, str]],
    ylabel: str = "PSD of thickness (m$^2$)",
    title: str = "",
) -> Path:
    """Log-log PSD against wavelength (large scales left), one curve per source.

    Args:
        curves: ``(label, psd, colour, linestyle)``.
    """
    fig, ax = plt.subplots(figsize=(6, 4.2))
    _spectra_axes(ax, wavelength_km, curves, ylabel, title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_spectra_grid(
    path: str | Path,
    wavelength_km: np.ndarray,
    panels: Sequence[tuple[str, Sequence[tuple[str, np.ndarray, str, str]]]],
) -> Path:
    """One spectrum panel per variable (``(title, curves)``), three per row, one shared legend."""
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, (title, curves) in zip(axes.ravel(), panels):
        _spectra_axes(ax, wavelength_km, curves, "PSD", title)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8)
    fig.subplots_adjust(bottom=0.16 if rows == 2 else 0.25, hspace=0.35)
    return save_figure(fig, path)


def _spectra_axes(ax, wavelength_km, curves, ylabel: str, title: str) -> None:
    for label, psd, colour, style in curves:
        values = np.where(np.asarray(psd) > 0, psd, np.nan)
        ax.loglog(wavelength_km, values, color=colour, linestyle=style, label=label)
    lo, hi = float(np.min(wavelength_km)), float(np.max(wavelength_km))
    ax.set_xlim(hi, lo)
    ticks = [t for t in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if lo <= t <= hi]
    if len(ticks) >= 2:  # plain numbers: log-axis labels like 3x10^2 overlap on short ranges
        ax.set_xticks(ticks, labels=[str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    ax.set_xlabel("wavelength (km)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", ls=":", lw=0.5, alpha=0.6)


def plot_calibration(
    path: str | Path,
    curves: Sequence[tuple[str, np.ndarray, np.ndarray, str]],
    threshold: float,
) -> Path:
    """Generated vs reference ice-cover probability per reference bin, with the diagonal.

    Args:
        curves: ``(label, mean_test [B], mean_generated [B], colour)``; NaN for empty bins.
    """
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="perfect calibration")
    for label, mean_test, mean_gen, colour in curves:
        used = np.isfinite(mean_test) & np.isfinite(mean_gen)  # empty bins are NaN
        ax.plot(mean_test[used], mean_gen[used], marker="o", ms=3, color=colour, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel(f"test probability of sic >= {threshold:g}")
    ax.set_ylabel("generated probability")
    ax.grid(True, ls=":", lw=0.5, alpha=0.6)
    ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, path)


def plot_miz_histogram(
    path: str | Path,
    reference: np.ndarray,
    models: Sequence[tuple[str, np.ndarray, str]],
    bins: int = 20,
) -> Path:
    """Distributions of the marginal-ice-zone area (10^3 km^2), reference filled, models as steps."""
    scale = 1e-3
    values = [np.asarray(reference) * scale] + [np.asarray(a) * scale for _, a, _ in models]
    fig, ax = plt.subplots(figsize=(6, 4))
    _histograms(ax, values[0], [(label, v, colour) for (label, _, colour), v in zip(models, values[1:])], bins)
    ax.set_xlabel("MIZ area (10$^3$ km$^2$)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _histograms(ax, reference: np.ndarray, sources: Sequence[tuple[str, np.ndarray, str]], bins: int) -> None:
    values = [np.asarray(reference, dtype=np.float64)] + [np.asarray(v, dtype=np.float64) for _, v, _ in sources]
    finite = np.concatenate([v[np.isfinite(v)] for v in values])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    ax.hist(values[0], bins=edges, density=True, color="0.85", edgecolor="0.4", label="test")
    for (label, _, colour), v in zip(sources, values[1:]):
        ax.hist(v, bins=edges, density=True, histtype="step", lw=1.6, color=colour, label=label)
    ax.set_ylabel("density")


def plot_aggregate_histograms(
    path: str | Path,
    panels: Sequence[tuple[str, np.ndarray, Sequence[tuple[str, np.ndarray, str]]]],
    bins: int = 20,
) -> Path:
    """Distributions of per-state aggregates, one panel each: ``(x label, reference values, sources)``."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False)
    for ax, (xlabel, reference, sources) in zip(axes[0], panels):
        _histograms(ax, reference, sources, bins)
        ax.set_xlabel(xlabel)
    axes[0, 0].legend(fontsize=7)
    return save_figure(fig, path)


def plot_deformation_scaling(path: str | Path, curves: Sequence[tuple[str, dict, str]]) -> Path:
    """``<eps_L^q>`` against box side L (km), log-log, one panel per q; ``curves``: ``(label, scaling, colour)``."""
    qs = next((c[1]["qs"] for c in curves if "qs" in c[1]), [1, 2, 3])
    fig, axes = plt.subplots(1, len(qs), figsize=(4.4 * len(qs), 3.6), squeeze=False)
    for i, q in enumerate(qs):
        ax = axes[0, i]
        for label, scaling, colour in curves:
            if "moments_per_day_q" not in scaling:
                continue
            beta = scaling["beta"][i]
            ax.loglog(
                scaling["scales_km"],
                scaling["moments_per_day_q"][i],
                "o-",
                ms=3,
                color=colour,
                label=f"{label} (beta {beta:.2f})",
            )
        ax.set_xlabel("box side L (km)")
        ax.set_title(f"q = {q:g}: <eps_L^q> (1/day)^q", fontsize=10)
        ax.grid(True, which="both", ls=":", lw=0.5, alpha=0.6)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return save_figure(fig, path)
