"""Draw the statistics of docs/synthetic_arctic.md from generated data and save their numbers.

    .venv/bin/python docs/make_synth_stats_figure.py [--seed 0] [--years 10] [--states 8]

- docs/synth_extent_cycle.png: monthly mean extent of a 128 x 128, 5-daily set (each year and
  the mean) against the NSIDC 2010s monthly means, and the MIZ share of the extent by month;
- docs/synth_deformation_scaling.png: <eps_L^q> against the box side L (q = 1, 2, 3) for
  winter and summer states at 512 x 512, with the fitted beta(q), and the grid-scale PDF of
  total deformation with its tail;
- docs/synth_stats.json: every number shown.

Extent and shares are computed here from the stored concentration and the grid's cell areas;
the deformation statistics by hpc_seaice.evaluation.deformation_stats.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hpc_seaice.data.synth.generate import synth_times  # noqa: E402
from hpc_seaice.data.synth.model import SyntheticArctic  # noqa: E402
from hpc_seaice.evaluation.deformation_stats import (  # noqa: E402
    deformation_pdf,
    deformation_scaling,
    grid_deformation,
)

HERE = Path(__file__).parent
NSIDC_2010S = np.array([13.5, 14.4, 14.6, 14.0, 12.8, 11.0, 8.2, 5.6, 4.7, 6.8, 9.8, 12.0])
MONTHS = "JFMAMJJASOND"


def seasonal(seed: int, years: int) -> dict[str, object]:
    """Extent, MIZ share and the largest non-0/1 concentration value share, by month and year."""
    times = synth_times("2009-01-01", f"{2008 + years}-12-31", "5D")
    model = SyntheticArctic(128, seed, 5.0)
    area = model.geometry.area / 1e12  # million km^2
    extent, miz, top = [], [], {}
    month = times.astype("datetime64[M]").astype(int) % 12
    year = times.astype("datetime64[Y]").astype(int) + 1970
    for lo in range(0, len(times), 32):
        for t, s in zip(range(lo, lo + 32), model.states(times[lo : lo + 32])):
            sic = s[1]
            e = float((area * (sic >= 0.15)).sum())
            extent.append(e)
            miz.append(float((area * ((sic >= 0.15) & (sic <= 0.8))).sum()) / e)
            icy = sic[sic > 0]
            _, counts = np.unique(icy[icy < 1], return_counts=True)
            top[int(month[t])] = max(top.get(int(month[t]), 0.0), float(counts.max() / icy.size))
    extent_a, miz_a = np.array(extent), np.array(miz)
    by_year = {int(y): [float(extent_a[(year == y) & (month == k)].mean()) for k in range(12)] for y in np.unique(year)}
    monthly = np.array([extent_a[month == k].mean() for k in range(12)])
    shape = (monthly - monthly.min()) / (monthly.max() - monthly.min())
    observed = (NSIDC_2010S - NSIDC_2010S.min()) / (NSIDC_2010S.max() - NSIDC_2010S.min())
    return {
        "grid": 128,
        "years": years,
        "monthly_extent": monthly.round(3).tolist(),
        "extent_by_year": by_year,
        "normalised_max_deviation": float(np.abs(shape - observed).max()),
        "miz_share": [float(miz_a[month == k].mean()) for k in range(12)],
        "largest_plateau_share": [top[k] for k in range(12)],
    }


def deformation(seed: int, states: int) -> dict[str, object]:
    """beta(q) and the grid-scale PDF over the drifting pack, winter and summer, 512 x 512."""
    out: dict[str, object] = {}
    for season, start in (("winter", "2009-02-01"), ("summer", "2009-07-10")):
        model = SyntheticArctic(512, seed, 5.0)
        x = model.states(synth_times(start, "2009-12-31", "5D")[:states])
        g = model.geometry
        u, v = x[:, 3].astype(np.float64), x[:, 4].astype(np.float64)
        pack = (x[:, 1] >= 0.5) & ((u != 0) | (v != 0))
        fit = deformation_scaling(u, v, pack, g.dx, g.dy, scales=(1, 2, 4, 8, 16, 32))
        eps = grid_deformation(u, v, pack, g.dx, g.dy)
        pdf = deformation_pdf(eps)
        with_fast = grid_deformation(u, v, x[:, 1] >= 0.5, g.dx, g.dy)
        top = np.sort(eps)[::-1]
        out[season] = {
            "start": start,
            "states": states,
            "scaling": fit.to_dict(),
            "pdf": pdf.to_dict(),
            "pdf_bins": {"edges": pdf.bin_edges.tolist(), "density": pdf.density.tolist()},
            "mean_per_day": float(eps.mean()),
            "top_tenth_share": float(top[: top.size // 10].sum() / top.sum()),
            "share_below_1e-4_with_fast_ice": float((with_fast < 1e-4).mean()),
        }
    return out


def plot_extent(stats: dict, path: Path) -> None:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    x = np.arange(12)
    for values in stats["extent_by_year"].values():
        ax.plot(x, values, color="0.75", lw=0.8)
    ax.plot(x, stats["monthly_extent"], "o-", color="C0", label=f"synthetic, mean of {stats['years']} years")
    ax.plot(x, NSIDC_2010S, "s--", color="k", label="NSIDC sea-ice index, 2010s mean")
    ax.set_xticks(x, list(MONTHS))
    ax.set_ylabel("extent (sic >= 0.15), million km$^2$")
    ax.set_title(f"Seasonal cycle (normalised shape within {stats['normalised_max_deviation']:.3f})")
    ax.legend()
    bx.bar(x, 100 * np.array(stats["miz_share"]), color="C1")
    bx.fill_between([-0.4, 3.4], 2, 10, color="C2", alpha=0.15, label="target, Jan-Apr")
    bx.fill_between([5.6, 8.4], 15, 45, color="C3", alpha=0.15, label="target, Jul-Sep")
    bx.set_xticks(x, list(MONTHS))
    bx.set_ylabel("MIZ (0.15 <= sic <= 0.8), % of extent")
    bx.set_title("Marginal ice zone share of the extent")
    bx.legend()
    fig.savefig(path, dpi=70)


def plot_deformation(stats: dict, path: Path) -> None:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    for season, style in (("winter", "-"), ("summer", ":")):
        s = stats[season]["scaling"]
        km = np.array(s["scales_km"])
        for i, q in enumerate(s["qs"]):
            m = np.array(s["moments_per_day_q"][i])
            ax.loglog(km, m, "o" + style, color=f"C{i}", label=f"{season} q={q:g}: beta={s['beta'][i]:.2f}")
    w = stats["winter"]["scaling"]
    km = np.array(w["scales_km"])
    for i, b in enumerate((0.2, 0.5, 1.0)):
        ref = w["moments_per_day_q"][i][0] * (km / km[0]) ** -b
        ax.loglog(km, ref, color="k", lw=0.6, alpha=0.6)
    ax.set_xlabel("box side L (km)")
    ax.set_ylabel("<eps_L^q>, (1/day)^q")
    ax.set_title("Scaling of total deformation (thin black: observed beta 0.2, 0.5, 1.0)")
    ax.legend(fontsize=7)
    for season, colour in (("winter", "C0"), ("summer", "C3")):
        b = stats[season]["pdf_bins"]
        edges, dens = np.array(b["edges"]), np.array(b["density"])
        centres = np.sqrt(edges[1:] * edges[:-1])
        ok = dens > 0
        p = stats[season]["pdf"]
        label = f"{season}: tail exponent {p['tail_exponent']:.2f}"
        bx.loglog(centres[ok], dens[ok], "o-", ms=3, color=colour, label=label)
        lo, hi = p["tail_range_per_day"]
        bx.axvspan(lo, hi, color=colour, alpha=0.08)
    bx.axvline(1e-4, color="k", lw=0.6)
    bx.set_xlabel("grid-scale total deformation (1/day)")
    bx.set_ylabel("PDF")
    bx.set_title("Grid-scale PDF over the drifting pack (shaded: fitted tail decade)")
    bx.legend()
    fig.savefig(path, dpi=70)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--years", type=int, default=10)
    p.add_argument("--states", type=int, default=8)
    args = p.parse_args()
    stats = {"seasonal": seasonal(args.seed, args.years), "deformation": deformation(args.seed, args.states)}
    (HERE / "synth_stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    plot_extent(stats["seasonal"], HERE / "synth_extent_cycle.png")
    plot_deformation(stats["deformation"], HERE / "synth_deformation_scaling.png")
    print(json.dumps({k: v for k, v in stats["seasonal"].items() if k != "extent_by_year"}, indent=1))
    for season in ("winter", "summer"):
        d = stats["deformation"][season]
        print(season, "beta", np.round(d["scaling"]["beta"], 3), {k: v for k, v in d["pdf"].items()})
        print("  mean", d["mean_per_day"], "top tenth", d["top_tenth_share"])
        print("  below 1e-4 with fast ice", d["share_below_1e-4_with_fast_ice"])


if __name__ == "__main__":
    main()
