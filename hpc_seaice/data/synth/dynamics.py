"""Sea-ice kinematics of the synthetic Arctic: LKF networks, rigid plates, damage memory.

Why plates: in sea ice (and in neXtSIM) deformation is not spread over the pack but
concentrated on narrow linear kinematic features (LKFs) between floes that move almost
rigidly. Here the LKFs are the zero contours of two random fields whose wave vectors point in
two directions 40 degrees apart (two conjugate fault families, crossing at 30-50 degrees),
switched on where a third, smooth field is high (segments of many lengths). The connected
pieces of ice between active LKFs are plates; each plate moves with the best rigid motion
(translation plus rotation) of the smooth drift over it, so divergence and shear vanish inside
plates and live on the LKFs. Damage is a memory field: advected with the ice, relaxing over
10-30 days, renewed on the active LKFs.

The opening and closing of LKFs use the divergence of :mod:`hpc_seaice.data.geo.deformation`
(true cell sizes), the same definition the metrics use.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

CRACK_HALF_WIDTH = 0.5  # cells: |F| / |grad F| below this is on the zero contour


def lkf_lines(f1: np.ndarray, f2: np.ndarray, gate: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Active LKFs of one state: a crack mask (bool) and an intensity in [0, 1].

    Cells within about half a cell of a zero contour of ``f1`` or ``f2`` (distance
    |F| / |grad F| in cells) where ``gate`` exceeds ``threshold``; the intensity is 1 on the
    contour and fades over one cell, so damage reaches exactly 1 in LKF cores.
    """
    dist = None
    for f in (f1, f2):
        gy, gx = np.gradient(f)
        d = np.abs(f) / (np.hypot(gx, gy) + 1e-6)
        dist = d if dist is None else np.minimum(dist, d)
    assert dist is not None
    active = np.clip((gate - threshold) / 0.4, 0.0, 1.0)
    crack = (dist < CRACK_HALF_WIDTH) & (active > 0.0)
    intensity = np.clip(1.4 * np.exp(-np.square(dist / 0.8)) * np.sqrt(active), 0.0, 1.0)
    return crack, intensity.astype(np.float32)


def rigid_plates(
    u: np.ndarray,
    v: np.ndarray,
    plates: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replace the drift on each connected plate by its least-squares rigid motion.

    ``plates`` is a bool mask of plate cells (4-connected pieces are separate plates); ``x``,
    ``y`` are cell positions in metres. Returns u, v (0 off the plates) and the plate labels.
    """
    labels, n = ndimage.label(plates)
    if n == 0:
        return np.zeros_like(u), np.zeros_like(v), labels
    lab = labels.ravel()
    sel = lab > 0
    idx = lab[sel]
    w = np.bincount(idx, minlength=n + 1).astype(np.float64)
    w[0] = 1.0

    def mean(a: np.ndarray) -> np.ndarray:
        return np.bincount(idx, weights=a.ravel()[sel], minlength=n + 1) / w

    xc, yc = mean(x), mean(y)
    uc, vc = mean(u), mean(v)
    rx = x.ravel()[sel] - xc[idx]
    ry = y.ravel()[sel] - yc[idx]
    uu = u.ravel()[sel] - uc[idx]
    vv = v.ravel()[sel] - vc[idx]
    num = np.bincount(idx, weights=rx * vv - ry * uu, minlength=n + 1)
    den = np.bincount(idx, weights=rx * rx + ry * ry, minlength=n + 1)
    omega = np.where(den > 0, num / np.maximum(den, 1e-30), 0.0)
    ur = np.zeros(u.size)
    vr = np.zeros(v.size)
    ur[sel] = uc[idx] - omega[idx] * ry
    vr[sel] = vc[idx] + omega[idx] * rx
    return ur.reshape(u.shape), vr.reshape(v.shape), labels


def _box3(a: np.ndarray) -> np.ndarray:
    """Sum over each cell's 3 x 3 neighbourhood (zero outside the array)."""
    p = np.pad(a, 1)
    h, w = a.shape
    return sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3))


def fill_from_neighbours(fields: list[np.ndarray], known: np.ndarray, where: np.ndarray) -> list[np.ndarray]:
    """Cells in ``where`` get the mean of each field over their known 3 x 3 neighbours (else 0).

    Crack cells take the average motion of the plates on either side, so the velocity jump
    spreads over the crack's width instead of a random value sitting in it.
    """
    k = known.astype(np.float32)
    den = _box3(k)
    ok = den > 0.5
    out = []
    for a in fields:
        filled = np.where(ok, _box3(a * k) / np.maximum(den, 1.0), 0.0)
        out.append(np.where(where, filled, a))
    return out


def advect(field: np.ndarray, u: np.ndarray, v: np.ndarray, dt_s: float, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Semi-Lagrangian transport of a cell field by velocities u, v (m/s) over ``dt_s`` seconds.

    Displacements are capped at 3 cells: long data-set steps (days) only need the field to
    move with the ice, not an accurate trajectory.
    """
    h, w = field.shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    shift_c = np.clip(u * dt_s / dx, -3.0, 3.0)
    shift_r = np.clip(v * dt_s / dy, -3.0, 3.0)
    return ndimage.map_coordinates(field, [rows - shift_r, cols - shift_c], order=1, mode="nearest")
