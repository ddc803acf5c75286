"""Sea-ice kinematics from a velocity field: speed, divergence, shear and total deformation.

Sea-ice convention (e.g. the RGPS and neXtSIM deformation papers):

- divergence ``div = du/dx + dv/dy``,
- maximum shear rate ``shear = sqrt((du/dx - dv/dy)^2 + (du/dy + dv/dx)^2)``,
- total deformation ``sqrt(div^2 + shear^2)``.

All three are invariant to rotations of the axes and to the orientation of y, so it does not
matter whether the grid rows run north or south. A rigid rotation has none of them.

Derivatives are centred index differences (one-sided on the grid border, ``np.gradient``)
divided by the local spacing ``dx``, ``dy`` (m; a scalar or per cell ``[H, W]``, see
:mod:`hpc_seaice.data.geo.cell_geometry` for the matching definition on a curvilinear grid), with
velocities ``u`` (along x = columns) and ``v`` (along y = rows) ``[..., H, W]`` in m/s: results
are in 1/s (multiply by :data:`SECONDS_PER_DAY` for the per-day values usually plotted).
"""

from __future__ import annotations

import numpy as np

SECONDS_PER_DAY = 86400.0
Spacing = float | np.ndarray


def speed(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Ice speed sqrt(u^2 + v^2), in the units of u and v."""
    return np.hypot(np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64))


def velocity_gradients(
    u: np.ndarray, v: np.ndarray, dx: Spacing, dy: Spacing
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``du/dx, du/dy, dv/dx, dv/dy`` in 1/s with per-cell (or constant) spacings in m."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    dx = np.asarray(dx, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    du_dy, du_dx = np.gradient(u, axis=(-2, -1))
    dv_dy, dv_dx = np.gradient(v, axis=(-2, -1))
    return du_dx / dx, du_dy / dy, dv_dx / dx, dv_dy / dy


def stencil_mask(mask: np.ndarray) -> np.ndarray:
    """Ocean cells whose four neighbours are ocean too (boolean ``[H, W]``).

    A centred difference at a coast mixes in the land value (0), which would show up as a
    spurious deformation line along every coast; only these cells have a clean stencil.
    Neighbours outside the grid count as ocean (np.gradient goes one-sided there).
    """
    ocean = np.asarray(mask) > 0.5
    padded = np.pad(ocean, 1, constant_values=True)
    return ocean & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def _masked(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return x if mask is None else np.where(stencil_mask(mask), x, np.nan)


def divergence(u: np.ndarray, v: np.ndarray, dx: Spacing, dy: Spacing, mask: np.ndarray | None = None) -> np.ndarray:
    """Divergence du/dx + dv/dy in 1/s (NaN off-stencil with a ``mask``)."""
    du_dx, _, _, dv_dy = velocity_gradients(u, v, dx, dy)
    return _masked(du_dx + dv_dy, mask)


def shear(u: np.ndarray, v: np.ndarray, dx: Spacing, dy: Spacing, mask: np.ndarray | None = None) -> np.ndarray:
    """Maximum shear rate sqrt((du/dx - dv/dy)^2 + (du/dy + dv/dx)^2) in 1/s (NaN off-stencil)."""
    du_dx, du_dy, dv_dx, dv_dy = velocity_gradients(u, v, dx, dy)
    return _masked(np.hypot(du_dx - dv_dy, du_dy + dv_dx), mask)


def total_deformation(
    u: np.ndarray, v: np.ndarray, dx: Spacing, dy: Spacing, mask: np.ndarray | None = None
) -> np.ndarray:
    """Total deformation sqrt(divergence^2 + shear^2) in 1/s (NaN off-stencil with a ``mask``)."""
    du_dx, du_dy, dv_dx, dv_dy = velocity_gradients(u, v, dx, dy)
    return _masked(np.sqrt((du_dx + dv_dy) ** 2 + (du_dx - dv_dy) ** 2 + (du_dy + dv_dx) ** 2), mask)
