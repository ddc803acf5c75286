"""Isotropic spectrum and central-Arctic box against known fields."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hpc_seaice.evaluation.spectra import central_arctic_box, isotropic_psd, ring_index


def _wave(n: int, kx: int, ky: int, amp: float = 1.0, phase: float = 0.0) -> np.ndarray:
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return amp * np.cos(2 * np.pi * (kx * x + ky * y) / n + phase)


@pytest.mark.parametrize(("kx", "ky", "k"), [(4, 0, 4), (0, 7, 7), (3, 4, 5)])
def test_sinusoid_peak_wavelength_and_parseval(kx, ky, k):
    n, dx = 64, 12.0
    field = _wave(n, kx, ky, amp=2.0)
    spec = isotropic_psd(field, dx_km=dx)
    assert spec.psd.shape == (n // 2,)
    assert spec.wavenumber[np.argmax(spec.psd)] == k
    assert spec.wavelength_km[k - 1] == pytest.approx(n * dx / k)
    others = np.delete(spec.psd, k - 1)
    assert others.max() < 1e-12 * spec.psd[k - 1]
    # Parseval with the unnormalised FFT: sum |F|^2 = n^2 sum x^2; the ring value is
    # (ring sum) * 2 pi k / count.
    ring_sum = spec.psd[k - 1] * spec.counts[k - 1] / (2 * np.pi * k)
    assert ring_sum == pytest.approx(n * n * (field**2).sum(), rel=1e-10)


def test_parseval_band_limited_sum_and_state_average():
    n = 32
    rng = np.random.default_rng(0)
    fields = []
    for _ in range(3):
        f = np.zeros((n, n))
        for _ in range(6):
            kx, ky = rng.integers(-10, 11, size=2)
            f += _wave(n, int(kx), int(ky), amp=rng.uniform(0.5, 2), phase=rng.uniform(0, 2 * np.pi))
        fields.append(f - f.mean())
    fields = np.stack(fields)
    spec = isotropic_psd(fields)
    total = (spec.psd * spec.counts / (2 * np.pi * spec.wavenumber)).sum()
    assert total == pytest.approx(n * n * (fields**2).sum(axis=(1, 2)).mean(), rel=1e-10)
    # The average over states equals the mean of the per-state spectra.
    each = np.mean([isotropic_psd(f).psd for f in fields], axis=0)
    np.testing.assert_allclose(spec.psd, each, rtol=1e-12)


def test_ring_counts_cover_the_disc():
    ring, counts = ring_index(16)
    assert counts[0] == 8  # (+-1, 0), (0, +-1) and the diagonals |k| = 1.41 < 1.5
    assert counts.sum() == ((ring >= 1) & (ring <= 8)).sum()


def test_box_land_fill_and_window():
    n = 40
    field = _wave(n, 5, 0)
    mask = np.ones((n, n))
    mask[:3, :4] = 0
    box = (slice(4, 36), slice(4, 36))
    a = isotropic_psd(field, mask=mask, box=box)
    assert a.psd.size == 16
    # Land outside the box does not matter, land inside is filled with the ocean mean.
    land_a, land_b = field.copy(), field.copy()
    mask[10, 10] = 0
    land_a[10, 10], land_b[10, 10] = 0.0, 1e3
    np.testing.assert_allclose(
        isotropic_psd(land_a, mask=mask, box=box).psd, isotropic_psd(land_b, mask=mask, box=box).psd
    )
    hann = isotropic_psd(field, window="hann")
    assert hann.wavenumber[np.argmax(hann.psd)] == 5
    with pytest.raises(ValueError):
        isotropic_psd(field[:, :30])


def test_central_arctic_box_is_largest_mostly_ocean_square():
    n = 64
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    mask = (np.hypot(y - n / 2, x - n / 2) < 20).astype(np.float32)  # ocean disc, land around
    ys, xs = central_arctic_box(mask, min_ocean_fraction=0.9)
    side = ys.stop - ys.start
    assert side == xs.stop - xs.start
    frac = mask[ys, xs].mean()
    assert frac >= 0.9
    # one larger centred square is not mostly ocean
    bigger = mask[ys.start - 1 : ys.stop, xs.start - 1 : xs.stop]
    assert bigger.mean() < 0.9
    assert abs((ys.start + ys.stop) / 2 - n / 2) <= 1 and abs((xs.start + xs.stop) / 2 - n / 2) <= 1
    # all ocean: the whole grid
    assert central_arctic_box(np.ones((20, 20))) == (slice(0, 20), slice(0, 20))
    # all land: the fixed centred half-grid box, with a warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert central_arctic_box(np.zeros((20, 24))) == (slice(5, 15), slice(7, 17))
    assert caught
