"""The deformation statistics against velocity fields whose answer is known analytically.

- a linear field: every box deforms alike, beta(q) = 0;
- one straight fault (a velocity jump across a tilted line): the boxes it crosses deform ~ 1/L
  and are a share ~ 1/L of all boxes, so <eps_L> is constant and beta(q) -> q - 1 once the
  boxes are much wider than the fault (its jump spreads over two cells of centred differences);
- Gaussian velocity fields with increments ~ L^H (spectral synthesis): beta(q) = q (1 - H);
- PDF statistics against samples of known distribution (Pareto: a straight survival tail).
"""

from __future__ import annotations

import numpy as np
import pytest

from hpc_seaice.evaluation import deformation_stats as S

N = 512
DX = 12e3


def _xy(n: int = N) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    return x, y


def test_linear_field_has_the_same_deformation_at_every_scale():
    x, y = _xy(256)
    a, b, c, d = 1e-6, 2e-6, -0.5e-6, 0.3e-6  # du/dx, du/dy, dv/dx, dv/dy in 1/s
    u, v = (a * x + b * y) * DX, (c * x + d * y) * DX
    pack = np.ones((256, 256), bool)
    pack[:40] = False
    pack[100:140, 60:200] = False  # a hole: boxes touching it are left out, not biased
    fit = S.deformation_scaling(u, v, pack, DX, DX, scales=(1, 2, 4, 8, 16, 32))
    eps = np.sqrt((a + d) ** 2 + (a - d) ** 2 + (b + c) ** 2) * 86400.0
    np.testing.assert_allclose(fit.moments, np.broadcast_to(eps ** fit.qs[:, None], fit.moments.shape), rtol=1e-9)
    np.testing.assert_allclose(fit.beta, 0.0, atol=1e-9)
    assert fit.counts[-1] > 0 and fit.fit_range == (1, 32)
    np.testing.assert_allclose(fit.scales_km, fit.scales * 12.0)


def test_boxes_must_lie_fully_in_the_pack():
    """A strong deformation outside the pack, or in a box that only touches it, changes nothing."""
    x, y = _xy(128)
    u, v = 1e-6 * y * DX, np.zeros_like(x)
    pack = np.zeros((128, 128), bool)
    pack[10:90, 20:100] = True
    noisy_u = np.where(pack, u, np.random.default_rng(0).normal(0, 1.0, u.shape))
    a = S.deformation_scaling(u, v, pack, DX, DX, scales=(1, 4, 16))
    b = S.deformation_scaling(noisy_u, v, pack, DX, DX, scales=(1, 4, 16))
    np.testing.assert_allclose(a.moments, b.moments, rtol=1e-12)
    np.testing.assert_array_equal(a.counts, b.counts)
    # one cell of the pack's rim has an unclean stencil; 78 x 78 clean cells remain
    assert a.counts[0] == 78 * 78
    with pytest.raises(ValueError, match="no 32 x 32 box"):
        S.deformation_scaling(u, v, pack[:, :] & (np.arange(128) < 40)[None, :], DX, DX, scales=(1, 32))


@pytest.mark.parametrize("angle", [27.0, 63.0])
def test_one_straight_fault(angle):
    x, y = _xy()
    th = np.radians(angle)
    s = (x - N / 2 + 0.3) * np.cos(th) + (y - N / 2) * np.sin(th)  # signed distance (cells)
    jump = 0.05  # m/s, slip along the fault
    u, v = -np.sin(th) * jump / 2 * np.tanh(s / 0.7), np.cos(th) * jump / 2 * np.tanh(s / 0.7)
    pack = np.ones((N, N), bool)
    fit = S.deformation_scaling(u, v, pack, DX, DX, scales=(1, 2, 4, 8, 16, 32, 64), fit_range=(16, 64), shifts=1)
    # <eps_L>: the jump times the fault's length over the area, the same at every L
    assert abs(fit.beta[0]) < 0.01
    mean_expected = jump * (N / max(abs(np.cos(th)), abs(np.sin(th)))) * DX / (N * DX) ** 2 * 86400.0
    np.testing.assert_allclose(fit.moments[0], mean_expected, rtol=0.03)
    np.testing.assert_allclose(fit.beta[1:], [1.0, 2.0], atol=0.15)
    assert fit.beta[1] < 1.0 and fit.beta[2] < 2.0  # approached from below (the fault's width)
    # a box the fault crosses from side to side deforms jump * chord / L^2, chord = L / max(|cos|, |sin|)
    grads, clean = S.pack_gradients(u, v, pack, DX, DX)
    for side in (16, 32, 64):
        top = S.box_deformation(grads, clean, side, shifts=1).max() / 86400.0
        assert top * side * DX == pytest.approx(jump / max(abs(np.cos(th)), abs(np.sin(th))), rel=0.03)


def _gaussian_velocity(h: float, seed: int, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """Velocity with power ~ k^-(2H+2) (increments ~ L^H): a stream function plus a weaker potential."""
    rng = np.random.default_rng(seed)
    ky = np.fft.fftfreq(n)[:, None] * n
    kx = np.fft.rfftfreq(n)[None, :] * n
    k = np.hypot(kx, ky)
    amp = np.where(k > 0, np.maximum(k, 1e-9) ** (-(h + 2.0)), 0.0)
    psi, phi = ((rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)) * amp for _ in range(2))
    phi *= 0.5
    w = 2j * np.pi / n
    u = np.fft.irfft2(-w * ky * psi + w * kx * phi, s=(n, n))
    v = np.fft.irfft2(w * kx * psi + w * ky * phi, s=(n, n))
    return u, v


@pytest.mark.parametrize("h", [0.4, 0.6])
def test_gaussian_field_with_known_increments(h):
    fits = [
        S.deformation_scaling(*_gaussian_velocity(h, seed), np.ones((N, N), bool), DX, DX, fit_range=(2, 32))
        for seed in range(2)
    ]
    beta = np.mean([f.beta for f in fits], axis=0)
    np.testing.assert_allclose(beta, [1 - h, 2 * (1 - h), 3 * (1 - h)], atol=0.07)
    assert max(f.residual.max() for f in fits) < 0.1  # straight in log-log


def test_grid_deformation_is_the_cell_total_deformation():
    from hpc_seaice.data.geo.deformation import total_deformation

    u, v = _gaussian_velocity(0.5, 3, 64)
    pack = np.ones((64, 64), bool)
    pack[:5] = False
    eps = S.grid_deformation(np.stack([u, u]), np.stack([v, v]), pack, DX, DX)
    ref = total_deformation(u, v, DX, DX, mask=pack)
    ref = ref[np.isfinite(ref)] * 86400.0
    assert eps.size == 2 * ref.size
    np.testing.assert_allclose(np.sort(eps[: ref.size]), np.sort(ref), rtol=1e-12)


def test_pdf_shares_and_a_power_law_tail():
    rng = np.random.default_rng(1)
    a = 2.5
    eps = 1e-3 * (1.0 - rng.random(400_000)) ** (-1.0 / a)  # Pareto: P(eps > x) = (x / 1e-3)^-a
    pdf = S.deformation_pdf(eps, below=(1e-4, 2e-3), above=(1e-2,))
    assert pdf.share_below[1e-4] == 0.0
    assert pdf.share_below[2e-3] == pytest.approx(1 - 2.0**-a, abs=0.005)
    assert pdf.share_above[1e-2] == pytest.approx(10.0**-a, abs=0.001)
    assert pdf.tail_exponent == pytest.approx(a, abs=0.05) and pdf.tail_r2 > 0.998 and abs(pdf.tail_bend) < 0.15
    assert pdf.tail_range[1] == pytest.approx(10 * pdf.tail_range[0])
    # the density integrates to one over the bins
    assert (pdf.density * np.diff(pdf.bin_edges)).sum() == pytest.approx(1.0, abs=1e-9)


def test_a_lognormal_tail_is_not_straight():
    """Over the decade above its 90th percentile a log-normal steepens (the bend the Pareto lacks)."""
    eps = np.exp(np.random.default_rng(2).normal(-5.0, 1.0, 400_000))
    pdf = S.deformation_pdf(eps)
    assert pdf.tail_bend > 0.8, pdf.tail_bend
    with pytest.raises(ValueError, match="runs past the largest"):
        S.deformation_pdf(eps, tail_decades=3.0)
