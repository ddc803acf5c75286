"""Divergence, shear and total deformation against linear velocity fields (exact for centred differences)."""

from __future__ import annotations

import numpy as np
import pytest

from hpc_seaice.data.geo import deformation as D


def _grid(h: int, w: int, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.meshgrid(np.arange(h) * dy, np.arange(w) * dx, indexing="ij")
    return x, y


# (name, du/dx, du/dy, dv/dx, dv/dy, divergence, shear)
LINEAR = [
    ("pure divergence", 2e-6, 0.0, 0.0, 2e-6, 4e-6, 0.0),
    ("pure shear", 0.0, 3e-6, 3e-6, 0.0, 0.0, 6e-6),
    ("stretching", 2e-6, 0.0, 0.0, -2e-6, 0.0, 4e-6),
    ("rigid rotation", 0.0, -3e-6, 3e-6, 0.0, 0.0, 0.0),
    ("mixed", 1e-6, -4e-6, 2.5e-6, 0.5e-6, 1.5e-6, np.hypot(0.5e-6, -1.5e-6)),
]


@pytest.mark.parametrize(("name", "a", "b", "c", "d", "div", "shear"), LINEAR, ids=[row[0] for row in LINEAR])
def test_linear_velocity_fields(name, a, b, c, d, div, shear):
    dx, dy = 12e3, 10e3
    x, y = _grid(9, 11, dx, dy)
    u, v = a * x + b * y, c * x + d * y
    atol = 1e-18
    np.testing.assert_allclose(D.divergence(u, v, dx, dy), div, rtol=1e-9, atol=atol)
    np.testing.assert_allclose(D.shear(u, v, dx, dy), shear, rtol=1e-9, atol=atol)
    # the sea-ice convention: total deformation = sqrt(div^2 + shear^2), not the shear alone
    np.testing.assert_allclose(D.total_deformation(u, v, dx, dy), np.hypot(div, shear), rtol=1e-9, atol=atol)
    # batched: a second state with twice the velocities has twice the rates
    both = D.total_deformation(np.stack([u, 2 * u]), np.stack([v, 2 * v]), dx, dy)
    assert both.shape == (2, 9, 11)
    np.testing.assert_allclose(both[1], 2 * np.hypot(div, shear), rtol=1e-9, atol=atol)


def test_pure_divergence_is_counted_in_total_deformation():
    x, y = _grid(6, 6, 1e3, 1e3)
    total = D.total_deformation(1e-6 * x, 1e-6 * y, 1e3, 1e3)
    np.testing.assert_allclose(total, 2e-6, rtol=1e-9)  # the shear-only definition gave 0 here


def test_per_cell_spacings_on_a_stretched_grid():
    """Non-uniform cell positions; dx, dy per cell as cell_geometry defines them (centred half distances)."""
    j = np.arange(12, dtype=np.float64)
    i = np.arange(9, dtype=np.float64)
    xs = 10e3 * (j + 0.08 * j**2)  # cells grow along x
    ys = 8e3 * (i + 0.05 * i**3)
    y, x = np.meshgrid(ys, xs, indexing="ij")
    dx = np.broadcast_to(np.gradient(xs), x.shape)
    dy = np.broadcast_to(np.gradient(ys)[:, None], y.shape)
    a, b, c, d = 1e-6, -4e-6, 2.5e-6, 0.5e-6
    u, v = a * x + b * y, c * x + d * y
    np.testing.assert_allclose(D.divergence(u, v, dx, dy), a + d, rtol=1e-9)
    np.testing.assert_allclose(D.shear(u, v, dx, dy), np.hypot(a - d, b + c), rtol=1e-9)
    # one nominal spacing on this grid is wrong: the per-cell spacing matters
    assert not np.allclose(D.divergence(u, v, dx.mean(), dy.mean()), a + d, rtol=1e-2)


def test_sinusoidal_shear_speed_and_mask():
    dx = dy = 1e3
    n = 200
    x, y = _grid(n, n, dx, dy)
    length, amp = 50e3, 0.1
    u = amp * np.cos(2 * np.pi * y / length)
    exact = np.abs(amp * 2 * np.pi / length * np.sin(2 * np.pi * y / length))
    got = D.total_deformation(u, np.zeros_like(u), dx, dy)
    # centred differences: relative error ~ (k dy)^2 / 6 ~ 0.3 %
    np.testing.assert_allclose(got[1:-1], exact[1:-1], atol=5e-3 * exact.max())
    np.testing.assert_allclose(D.speed(u, u), np.sqrt(2) * np.abs(u))

    mask = np.ones((5, 5))
    mask[2, 2] = 0
    stencil = D.stencil_mask(mask)
    assert not stencil[2, 2] and not stencil[1, 2] and not stencil[3, 2] and not stencil[2, 1]
    assert stencil[1, 1] and stencil[0, 0]
    for fn in (D.total_deformation, D.divergence, D.shear):
        out = fn(np.ones((5, 5)), np.zeros((5, 5)), dx, dy, mask=mask)
        assert np.isnan(out[2, 3]) and out[0, 0] == 0.0
