"""Isotropic spectrum and central-Arctic box against known fields."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hpc_seaice.evaluation.spectra import (
    band_log_ratios,
    central_arctic_box,
    hann_window,
    isotropic_psd,
    laplace_fill,
    log_ratio,
    remove_plane,
    ring_index,
)


def _wave(n: int, kx: int, ky: int, amp: float = 1.0, phase: float = 0.0) -> np.ndarray:
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return amp * np.cos(2 * np.pi * (kx * x + ky * y) / n + phase)


@pytest.mark.parametrize(("kx", "ky", "k"), [(4, 0, 4), (0, 7, 7), (3, 4, 5)])
def test_sinusoid_peak_wavelength_and_parseval(kx, ky, k):
    n, dx = 64, 12.0
    field = _wave(n, kx, ky, amp=2.0)
    spec = isotropic_psd(field, dx_km=dx, estimator="raw")
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
    spec = isotropic_psd(fields, estimator="raw")
    total = (spec.psd * spec.counts / (2 * np.pi * spec.wavenumber)).sum()
    assert total == pytest.approx(n * n * (fields**2).sum(axis=(1, 2)).mean(), rel=1e-10)
    # The average over states equals the mean of the per-state spectra.
    each = np.mean([isotropic_psd(f, estimator="raw").psd for f in fields], axis=0)
    np.testing.assert_allclose(spec.psd, each, rtol=1e-12)


def test_ring_counts_cover_the_disc():
    ring, counts = ring_index(16)
    assert counts[0] == 8  # (+-1, 0), (0, +-1) and the diagonals |k| = 1.41 < 1.5
    assert counts.sum() == ((ring >= 1) & (ring <= 8)).sum()


def test_box_land_fill_and_estimators():
    n = 40
    field = _wave(n, 5, 0)
    mask = np.ones((n, n))
    mask[:3, :4] = 0
    box = (slice(4, 36), slice(4, 36))
    for estimator in ("raw", "tapered"):
        a = isotropic_psd(field, mask=mask, box=box, estimator=estimator)
        assert a.psd.size == 16
        # Land outside the box does not matter; land inside is filled whatever it held.
        land_a, land_b = field.copy(), field.copy()
        hole = mask.copy()
        hole[10:13, 10:12] = 0
        land_a[10:13, 10:12], land_b[10:13, 10:12] = 0.0, 1e3
        np.testing.assert_allclose(
            isotropic_psd(land_a, mask=hole, box=box, estimator=estimator).psd,
            isotropic_psd(land_b, mask=hole, box=box, estimator=estimator).psd,
        )
    tapered = isotropic_psd(field, estimator="tapered")
    assert tapered.wavenumber[np.argmax(tapered.psd)] == 5
    with pytest.raises(ValueError):
        isotropic_psd(field[:, :30])
    with pytest.raises(ValueError):
        isotropic_psd(field, estimator="hann")


def _psd_from_scratch(fields, mask, box, dx_km, estimator):
    """The ring PSD spelled out step by step, with rings and window built afresh: no cache."""
    x = np.asarray(fields, dtype=np.float64)[..., box[0], box[1]]
    ocean = mask[box[0], box[1]] > 0.5
    n = x.shape[-1]
    if estimator == "tapered":
        x = remove_plane(laplace_fill(x, ocean)) * hann_window(n)
    else:
        mean = np.where(ocean, x, 0.0).sum(axis=(-2, -1), keepdims=True) / ocean.sum()
        x = np.where(ocean, x, mean)
    power = (np.abs(np.fft.fft2(x)) ** 2).reshape(-1, n * n).mean(axis=0)
    ring, counts = ring_index(n)
    k = np.arange(1, n // 2 + 1)
    sums = np.bincount(ring.ravel(), weights=power, minlength=n // 2 + 1)[1 : n // 2 + 1]
    return k, n * dx_km / k, sums * (2.0 * np.pi * k) / counts, counts


def test_cached_rings_and_window_give_bit_identical_spectra_per_box():
    """Rings and window are built once per box side and shared: every call, first or repeated,
    for boxes of different sides in any order, equals the spectrum computed from scratch bit for bit."""
    rng = np.random.default_rng(3)
    fields = rng.normal(size=(3, 48, 48)).cumsum(axis=-1)
    mask = np.ones((48, 48))
    mask[20:24, 18:23] = 0
    boxes = [(slice(4, 36), slice(6, 38)), (slice(0, 48), slice(0, 48)), (slice(10, 30), slice(12, 32))]
    for box in [*boxes, *boxes[::-1]]:
        for estimator in ("tapered", "raw"):
            got = isotropic_psd(fields, mask=mask, box=box, dx_km=7.5, estimator=estimator)
            expected = _psd_from_scratch(fields, mask, box, 7.5, estimator)
            for array, reference in zip((got.wavenumber, got.wavelength_km, got.psd, got.counts), expected):
                np.testing.assert_array_equal(array, reference, strict=True)
    got.counts[0] = -1  # a caller owns its spectrum's arrays; the shared ones are read-only
    np.testing.assert_array_equal(isotropic_psd(fields[:, :32, :32]).counts, ring_index(32)[1])


def test_laplace_fill_is_exact_for_linear_fields_and_keeps_ocean():
    n = 24
    y, x = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing="ij")
    plane = 3.0 + 0.5 * x - 0.25 * y  # harmonic: the discrete Laplace fill must reproduce it
    ocean = np.ones((n, n), bool)
    ocean[5:12, 3:9] = False  # an island
    ocean[:4, 18:] = False  # land on the box corner (zero-gradient edges)
    ocean[15, 15] = False
    holed = np.where(ocean, plane, -99.0)
    filled = laplace_fill(np.stack([holed, 2 * holed]), ocean)
    inland = np.ones((n, n), bool)
    inland[:4, 18:] = False  # the corner touches the box edge, where the fill has zero gradient
    np.testing.assert_allclose(filled[0][inland], plane[inland], atol=1e-9)
    np.testing.assert_allclose(filled[1][inland], 2 * plane[inland], atol=1e-9)
    # maximum principle in the corner: between the ocean values around it, never a step
    corner = filled[0][:4, 18:]
    border = np.concatenate([plane[4, 17:], plane[:5, 17]])
    assert border.min() - 1e-9 <= corner.min() and corner.max() <= border.max() + 1e-9
    # a single land cell gets the mean of its four neighbours
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, n))
    one = np.ones((n, n), bool)
    one[7, 9] = False
    got = laplace_fill(f, one)
    assert got[7, 9] == pytest.approx((f[6, 9] + f[8, 9] + f[7, 8] + f[7, 10]) / 4)
    np.testing.assert_array_equal(got[one], f[one])


def test_plane_removal_and_window_power():
    n = 32
    y, x = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing="ij")
    np.testing.assert_allclose(remove_plane(4.0 + 2 * x - y), 0.0, atol=1e-9)
    # a plane (a ramp, non-periodic) has nothing left in the tapered spectrum
    assert isotropic_psd(4.0 + 2 * x - y).psd.max() < 1e-12
    w = hann_window(n)
    assert np.mean(w**2) == pytest.approx(1.0) and w[0, 0] == 0.0
    # white noise keeps its level: the renormalised window does not change the total power
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(64, n, n))
    raw = isotropic_psd(noise, estimator="raw").psd
    tapered = isotropic_psd(noise).psd
    assert abs(log_ratio(tapered[4:], raw[4:])) < 0.03


def _power_law_crops(sigma: float, n: int = 64, big: int = 256, fields: int = 4):
    """Non-periodic n x n crops of periodic k^-3 random fields, and of their Gaussian blur (sigma cells)."""
    rng = np.random.default_rng(0)
    fy = np.fft.fftfreq(big)[:, None]
    fx = np.fft.fftfreq(big)[None, :]
    k = np.hypot(fy, fx)
    k[0, 0] = np.inf
    transfer = np.exp(-2 * np.pi**2 * sigma**2 * (fy**2 + fx**2))  # FT of a unit Gaussian kernel
    crops, blurred = [], []
    for _ in range(fields):
        spec = k**-1.5 * (rng.normal(size=(big, big)) + 1j * rng.normal(size=(big, big)))
        f = np.fft.ifft2(spec).real
        g = np.fft.ifft2(np.fft.fft2(f) * transfer).real
        for i in range(0, big, n):
            for j in range(0, big, n):
                crops.append(f[i : i + n, j : j + n])
                blurred.append(g[i : i + n, j : j + n])
    return np.array(crops), np.array(blurred)


def test_known_blur_appears_at_its_analytic_strength_in_the_small_scale_band():
    """A 1.5-cell Gaussian blur of non-periodic k^-3 crops vs the analytic transfer |H(k)|^2."""
    n, sigma, dx_km = 64, 1.5, 12.0
    crops, blurred = _power_law_crops(sigma, n=n)
    analytic = None
    for estimator in ("tapered", "raw"):
        ref = isotropic_psd(crops, dx_km=dx_km, estimator=estimator)
        got = isotropic_psd(blurred, dx_km=dx_km, estimator=estimator)
        f = ref.wavenumber / n  # cycles per cell
        analytic = np.log10(np.exp(-4 * np.pi**2 * sigma**2 * f**2))
        measured = np.log10(got.psd / ref.psd)
        cells = n / ref.wavenumber
        four_to_eight = (cells >= 4) & (cells <= 8)
        error = np.abs(measured - analytic)[four_to_eight].max()
        small = (ref.wavelength_km < 100) & (analytic > -6)  # the band, above the double-precision floor
        band_error = abs(
            band_log_ratios(got.psd, ref.psd, ref.wavelength_km)["small_lt100km"]
            - analytic[ref.wavelength_km < 100].mean()
        )
        if estimator == "tapered":
            assert error < 0.1, error  # per ring, wavelengths of 4-8 cells
            assert np.abs(measured - analytic)[small].max() < 0.25  # every ring down to 6 decades
            assert band_error < 0.5  # the band mean, down to 2-cell waves
        else:  # the authors' estimator: edge leakage hides the blur by decades
            assert error > 1.0 and band_error > 2.0


def test_blur_is_still_seen_with_land_inside_the_box():
    """Coasts inside the box: the harmonic fill keeps the blur visible, a constant fill buries it."""
    n, sigma = 64, 1.5
    crops, blurred = _power_law_crops(sigma, n=n, fields=2)
    crops, blurred = crops + 5.0, blurred + 5.0  # a positive mean, as thickness has
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    mask = np.ones((n, n))
    mask[(x - 20) ** 2 + (y - 40) ** 2 < 64] = 0  # an island
    mask[:10, 50:] = 0  # a coast in the corner
    f = np.arange(1, n // 2 + 1) / n
    analytic = np.log10(np.exp(-4 * np.pi**2 * sigma**2 * f**2))
    cells = n / np.arange(1, n // 2 + 1)
    four_to_eight = (cells >= 4) & (cells <= 8)
    ratio = isotropic_psd(blurred, mask=mask).psd / isotropic_psd(crops, mask=mask).psd
    assert np.abs(np.log10(ratio) - analytic)[four_to_eight].max() < 0.4

    def mean_filled(a):
        ocean = mask > 0.5
        return np.where(ocean, a, a[:, ocean].mean(axis=1)[:, None, None])

    constant = isotropic_psd(mean_filled(blurred)).psd / isotropic_psd(mean_filled(crops)).psd
    assert np.abs(np.log10(constant) - analytic)[four_to_eight].max() > 1.0


def test_band_log_ratios():
    wavelength = np.array([800.0, 400.0, 250.0, 100.0, 99.0, 50.0])
    ref = np.ones(6)
    psd = np.array([10.0, 10.0, 1.0, 0.1, 0.01, 0.001])
    bands = band_log_ratios(psd, ref, wavelength)
    assert bands["large_gt400km"] == pytest.approx(1.0)  # 800 km only (400 is the mesoscale's edge)
    assert bands["meso_100_400km"] == pytest.approx((1.0 + 0.0 - 1.0) / 3)
    assert bands["small_lt100km"] == pytest.approx((-2.0 - 3.0) / 2)
    assert np.isnan(band_log_ratios(psd[:2], ref[:2], wavelength[:2])["small_lt100km"])


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


@pytest.mark.parametrize("n", [32, 128])
def test_small_scale_band_is_exact_for_mild_blur_and_a_lower_bound_for_strong_blur(n):
    """The band mean of a blur against its analytic value, on small and large boxes.

    Up to about a decade of attenuation the band mean is the analytic one; beyond, the window's
    leakage floor makes it read less smoothing than there is (never more), still in order.
    """
    measured, analytic = [], []
    for sigma in (0.5, 0.75, 1.5, 3.0):
        crops, blurred = _power_law_crops(sigma, n=n, big=256, fields=2)
        ref = isotropic_psd(crops, dx_km=12.0)
        got = isotropic_psd(blurred, dx_km=12.0)
        f = ref.wavenumber / n
        small = ref.wavelength_km < 100
        analytic.append(np.log10(np.exp(-4 * np.pi**2 * sigma**2 * f[small] ** 2)).mean())
        measured.append(band_log_ratios(got.psd, ref.psd, ref.wavelength_km)["small_lt100km"])
    measured, analytic = np.array(measured), np.array(analytic)
    assert np.abs(measured - analytic)[:2].max() < 0.1  # sigma 0.5, 0.75: -0.5 and -1.1 decades
    assert (measured >= analytic - 0.1).all()  # a lower bound on the smoothing
    assert (np.diff(measured) < 0).all()  # more blur, more negative
    assert measured[-1] > analytic[-1] + 5  # the floor: a 3-cell blur reads far weaker than its -17
