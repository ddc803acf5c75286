"""Sea-ice kinematics of the synthetic Arctic: LKF slips, damage renewal and memory, transport.

Why faults on top of the multifractal drift (:mod:`hpc_seaice.data.synth.cascade`): linear
kinematic features are sharp lines across which the ice slips, crossing at 30-50 degrees. Here
they are the zero contours of two random fields whose wave vectors point in two directions 40
degrees apart (two conjugate fault families), active in segments where a third, smooth field is
high. Across an active contour the velocity jumps by a slip along the line whose size follows
a log-normal cascade factor (a few strong faults, many weak ones). The slips are kept small
against the multifractal drift: a network of strong isolated faults would make the high
moments of the deformation scale like one line (``beta(q) -> q - 1``).

Damage is a memory field: advected with the ice, relaxing over 10-30 days, renewed where the
ice deforms (the deformation computed from the velocities, as the metrics do).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, special

FAULT_HALF_WIDTH = 0.5  # cells: the slip is spread over |F| / |grad F| of about this
SLIP_CAP = 40.0  # the Pareto factor is capped here: a few extreme slips would dominate <eps^3>


def fault_slip(
    families: list[np.ndarray], line_angles_deg: list[float], gate: np.ndarray, slip: float, tail: float
) -> tuple[np.ndarray, np.ndarray]:
    """Velocity (m/s) of the active faults: a jump of ``slip`` x a Pareto factor across each zero contour.

    ``families``: one random field per fault family (its zero contours are the faults, lines
    along ``line_angles_deg``); ``gate``: a unit-variance Gaussian field. Faults are active
    where it exceeds -0.5 (fading in over 0.4) and slip ``slip * (1 - Phi(gate))^(-1/tail)``
    (capped at :data:`SLIP_CAP`): the gate's quantile mapped onto a Pareto law of exponent
    ``tail``, so the slips, and with them the tail of the grid-scale deformation, fall off as a
    power law. The slip is a shear
    along the family's direction; where a contour bends away from it the same jump opens or
    closes the fault.
    """
    q = np.maximum(special.ndtr(-gate), 1e-6)  # the gate's upper-tail probability
    active = np.clip((gate + 0.5) * 2.5, 0.0, 1.0) * np.minimum(np.exp(np.log(q) * (-1.0 / tail)), SLIP_CAP)
    u = np.zeros_like(gate)
    v = np.zeros_like(gate)
    for f, angle in zip(families, line_angles_deg):
        gy, gx = np.gradient(f)
        # -1 | +1 on the two sides of the contour, a linear ramp over about one cell between
        side = np.clip(f / (FAULT_HALF_WIDTH * np.sqrt(gx * gx + gy * gy) + 1e-9), -1.0, 1.0)
        t = math.radians(angle)
        amp = (0.5 * slip) * active * side
        u += amp * np.float32(math.cos(t))
        v += amp * np.float32(math.sin(t))
    return u, v


def damage_renewal(eps_per_day: np.ndarray, eps_full: float) -> np.ndarray:
    """Damage made by the current deformation: eps / eps_full, 1 (an LKF core) from ``eps_full`` up."""
    return np.clip(eps_per_day / eps_full, 0.0, 1.0)


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
