"""The real coastline on the model grid, shipped as a small file in the package.

Why a committed file: the land/ocean map comes from the GLOBE 1-km land mask of the PyPI package
``global-land-mask``, whose import loads about 0.9 GB; the tests and the demo must not need it.
``coastline.npz`` holds, for the 512 x 512 grid, the number of land points among 4 x 4
sub-points of every cell (0..16). Any coarser grid that divides 512 sums those counts over its
blocks (a 128 x 128 cell counts 16 x 16 sub-points), calls a cell land where at least half of
its sub-points are land, and keeps only the water connected to the Arctic Ocean (the cell
nearest the North Pole), so lakes and isolated seas become land. Water cells touching at a
corner count as connected: on coarse grids a strait narrower than a cell (Hudson Strait at
192 km, the White Sea's throat and Nares Strait at 96 km) often survives only as a diagonal
step, and cutting it there would turn Hudson Bay or the White Sea into land and change the
ocean area from one grid to the next.

Regenerate the file (needs the optional extra: ``pip install -e '.[coastline]'``)::

    python -m hpc_seaice.data.geo.coastline --regenerate
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from hpc_seaice.data.geo.grid import BASE_GRID, Grid, check_grid, forward, inverse

COASTLINE_FILE = Path(__file__).with_name("coastline.npz")
SUPERSAMPLE = 4


def land_counts_from_globe(n: int = BASE_GRID, sub: int = SUPERSAMPLE) -> np.ndarray:
    """Land sub-points per cell [n, n] (uint8, 0..sub^2) from the GLOBE mask (slow, 0.9 GB)."""
    from global_land_mask import globe  # optional extra: only this command needs it

    g = Grid(n)
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    xs = (g.x[:, None] + offsets[None, :] * g.cell_m).ravel()
    ys = (g.y[:, None] + offsets[None, :] * g.cell_m).ravel()
    counts = np.zeros((n, n), np.uint8)
    for r0 in range(0, n * sub, 256):  # row bands keep the temporaries small
        yy, xx = np.meshgrid(ys[r0 : r0 + 256], xs, indexing="ij")
        lat, lon = inverse(xx, yy)
        land = globe.is_land(lat, lon).reshape(-1, sub, n, sub)
        counts[r0 // sub : (r0 + 256) // sub] = land.sum(axis=(1, 3))
    return counts


def ocean_from_counts(counts: np.ndarray, n: int) -> np.ndarray:
    """Boolean ocean mask [n, n] from 512 x 512 land counts: majority vote, then connectivity."""
    check_grid(n)
    b = counts.shape[0] // n
    total = counts.reshape(n, b, n, b).sum(axis=(1, 3), dtype=np.int64)
    water = 2 * total < (SUPERSAMPLE * b) ** 2  # land where at least half of the sub-points are
    labels, _ = ndimage.label(water, structure=np.ones((3, 3), bool))  # corners connect
    px, py = forward(np.array(90.0), np.array(0.0))
    g = Grid(n)
    row = int(np.argmin(np.abs(g.y - py)))
    col = int(np.argmin(np.abs(g.x - px)))
    if labels[row, col] == 0:
        raise ValueError(f"the North Pole cell of the {n} x {n} grid is land")
    return labels == labels[row, col]


@functools.lru_cache(maxsize=8)
def _load_counts(path: str) -> np.ndarray:
    with np.load(path) as f:
        counts = f["land_counts"]
    return counts


def ocean_mask(n: int, path: str | Path = COASTLINE_FILE) -> np.ndarray:
    """The ocean mask [n, n] (True = ocean) of the real coastline on an ``n`` x ``n`` grid."""
    return ocean_from_counts(_load_counts(str(path)), n).copy()


def regenerate(path: str | Path = COASTLINE_FILE) -> Path:
    """Write ``coastline.npz`` from ``global-land-mask`` (the optional extra)."""
    counts = land_counts_from_globe()
    g = Grid(BASE_GRID)
    np.savez_compressed(
        path,
        land_counts=counts,
        supersample=np.int64(SUPERSAMPLE),
        x_m=g.x,
        y_m=g.y,
        source=np.array("GLOBE 1-km land mask via the PyPI package global-land-mask"),
    )
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m hpc_seaice.data.geo.coastline --regenerate``."""
    p = argparse.ArgumentParser(prog="python -m hpc_seaice.data.geo.coastline", description=__doc__.split("\n")[0])
    p.add_argument("--regenerate", action="store_true", help="rebuild coastline.npz from global-land-mask")
    p.add_argument("--out", default=str(COASTLINE_FILE), help="file to write (default: the package's)")
    args = p.parse_args(argv)
    if not args.regenerate:
        try:
            counts = _load_counts(str(args.out))
        except (OSError, ValueError, KeyError) as exc:  # missing, not an npz, no land_counts
            print(f"coastline: {args.out}: not a coastline file ({type(exc).__name__})", file=sys.stderr)
            return 2
        for n in (512, 256, 128, 64, 32):
            print(f"{n:4d} x {n:<4d} ocean fraction {ocean_from_counts(counts, n).mean():.3f}")
        return 0
    try:
        import global_land_mask  # noqa: F401
    except ImportError:
        print("coastline: --regenerate needs global-land-mask (pip install -e '.[coastline]')", file=sys.stderr)
        return 2
    out = regenerate(args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
