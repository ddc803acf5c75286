"""Draw docs/synth_march_september.png: a March and a September state of the synthetic Arctic.

    .venv/bin/python docs/make_synth_figure.py [--grid 512] [--seed 0]

Rows: mid March and mid September of the first year; columns: thickness, concentration, drift
speed and total deformation (log scale), on the real polar-stereographic grid and coastline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hpc_seaice.data.geo.deformation import total_deformation  # noqa: E402
from hpc_seaice.data.synth.generate import synth_times  # noqa: E402
from hpc_seaice.data.synth.model import SyntheticArctic  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grid", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).with_name("synth_march_september.png")))
    args = p.parse_args()
    times = synth_times("2009-01-01", "2009-09-15", "1D")
    model = SyntheticArctic(args.grid, args.seed, 1.0)
    wanted = {np.datetime64("2009-03-15", "s"): "15 March", np.datetime64("2009-09-15", "s"): "15 September"}
    picked = {}
    for lo in range(0, len(times), 16):
        block = model.states(times[lo : lo + 16])
        for t, state in zip(times[lo : lo + 16], block):
            if t in wanted:
                picked[wanted[t]] = state
    g = model.geometry
    km = g.grid.cell_m / 1e3
    extent = [
        g.grid.x[0] / 1e3 - km / 2,
        g.grid.x[-1] / 1e3 + km / 2,
        g.grid.y[0] / 1e3 - km / 2,
        g.grid.y[-1] / 1e3 + km / 2,
    ]
    fig, axes = plt.subplots(2, 4, figsize=(18, 9.2), constrained_layout=True)
    land = np.where(g.ocean, np.nan, 1.0)
    for row, (label, s) in enumerate(picked.items()):
        ice = s[1] > 0
        total = total_deformation(s[3], s[4], g.dx, g.dy)
        panels = [
            ("thickness sit (m)", np.where(ice, s[0], np.nan), dict(cmap="viridis", vmin=0, vmax=5)),
            ("concentration sic", np.where(g.ocean, s[1], np.nan), dict(cmap="Blues_r", vmin=0, vmax=1)),
            ("speed (m/s)", np.where(ice, np.hypot(s[3], s[4]), np.nan), dict(cmap="magma", vmin=0, vmax=0.2)),
            (
                "total deformation (1/day, log10)",
                np.where(ice, np.log10(total * 86400.0 + 1e-6), np.nan),
                dict(cmap="gray_r", vmin=-3, vmax=-0.5),
            ),
        ]
        for col, (title, arr, kw) in enumerate(panels):
            ax = axes[row, col]
            im = ax.imshow(arr, origin="lower", extent=extent, interpolation="nearest", **kw)
            ax.imshow(land, origin="lower", extent=extent, cmap="Greys", vmin=0, vmax=2.5, interpolation="nearest")
            ax.set_title(f"{label}: {title}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, shrink=0.8)
        area = float((g.area * (s[1] >= 0.15)).sum()) / 1e12
        axes[row, 0].set_ylabel(f"{label}, extent {area:.1f} million km$^2$")
    fig.suptitle(
        f"Synthetic Arctic, {args.grid} x {args.grid} polar-stereographic grid ({km:.0f} km cells), seed {args.seed}"
    )
    fig.savefig(args.out, dpi=60)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
