"""The synthetic sea ice, property by property, with numbers.

Extent with true cell areas following the 2010s NSIDC seasonal cycle (March 14-16, September
4-6 million km^2, normalised monthly means within 0.10), a continuous concentration (no value
but 0 and 1 on more than 2 % of the ice-covered cells in any month) with a marginal ice zone
of a realistic share of the extent, regions (multi-year ice north of Greenland, open Atlantic
water, seasonal marginal seas), drift (Beaufort Gyre, Transpolar Drift out through Fram Strait,
fast ice), multi-scale deformation (beta(q) by box averaging at 512 x 512, a heavy grid-scale
tail, few rigid cells, more and less localised deformation in summer), LKFs crossing at 30-50
degrees, leads and ridges, damage memory.

Every statistic is computed here, independently of the generator's functions: extent and
shares from the stored fields and the grid's cell areas, deformation by centred differences
with the true cell sizes (total = sqrt(divergence^2 + shear^2)), and the scaling and PDF by
:mod:`hpc_seaice.evaluation.deformation_stats` (tested on analytic velocity fields).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from hpc_seaice.data.synth.dynamics import advect
from hpc_seaice.data.synth.generate import synth_times
from hpc_seaice.data.synth.model import SyntheticArctic
from hpc_seaice.evaluation.deformation_stats import deformation_pdf, deformation_scaling, grid_deformation

# NSIDC sea-ice index, Arctic monthly mean extent 2010-2019 (million km^2, rounded), Jan..Dec;
# written out here again so the test does not read the generator's copy.
NSIDC_2010S = np.array([13.5, 14.4, 14.6, 14.0, 12.8, 11.0, 8.2, 5.6, 4.7, 6.8, 9.8, 12.0])


def total_deformation(u: np.ndarray, v: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    du_dx = (np.roll(u, -1, 1) - np.roll(u, 1, 1)) / (2 * dx)
    dv_dx = (np.roll(v, -1, 1) - np.roll(v, 1, 1)) / (2 * dx)
    du_dy = (np.roll(u, -1, 0) - np.roll(u, 1, 0)) / (2 * dy)
    dv_dy = (np.roll(v, -1, 0) - np.roll(v, 1, 0)) / (2 * dy)
    div = du_dx + dv_dy
    shear = np.sqrt((du_dx - dv_dy) ** 2 + (du_dy + dv_dx) ** 2)
    return np.sqrt(div**2 + shear**2)


def interior_ice(state: np.ndarray, ocean: np.ndarray) -> np.ndarray:
    """Ice cells whose 3 x 3 neighbours are all ice: deformation there is inside the pack."""
    return ndimage.binary_erosion((state[1] > 0) & ocean, np.ones((3, 3), bool), border_value=0)


@pytest.fixture(scope="module")
def year128():
    """Two years of 5-daily states on the 128 x 128 grid."""
    times = synth_times("2009-01-01", "2010-12-31", "5D")
    model = SyntheticArctic(128, seed=0, dt_days=5.0)
    x = np.concatenate([model.states(times[i : i + 32]) for i in range(0, len(times), 32)])
    return model, times, x


def months(times: np.ndarray) -> np.ndarray:
    return times.astype("datetime64[M]").astype(int) % 12 + 1


def region(model: SyntheticArctic, lat0: float, lat1: float, lon0: float, lon1: float) -> np.ndarray:
    g = model.geometry
    return g.ocean & (g.lat >= lat0) & (g.lat <= lat1) & (g.lon >= lon0) & (g.lon <= lon1)


def monthly_means(values: np.ndarray, times: np.ndarray) -> np.ndarray:
    m = months(times)
    return np.array([values[m == k].mean() for k in range(1, 13)])


def extent_and_miz(x: np.ndarray, area_km2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Extent (sic >= 0.15) and MIZ area (0.15 <= sic <= 0.8) per state, million km^2."""
    sic = x[:, 1]
    extent = ((sic >= 0.15) * area_km2).sum(axis=(1, 2)) / 1e6
    miz = (((sic >= 0.15) & (sic <= 0.8)) * area_km2).sum(axis=(1, 2)) / 1e6
    return extent, miz


def test_extent_follows_the_2010s_seasonal_cycle(year128):
    model, times, x = year128
    extent, _ = extent_and_miz(x, model.geometry.area / 1e6)
    monthly = monthly_means(extent, times)
    assert 14.0 < monthly[2] < 16.0 and monthly.argmax() in (1, 2)  # March maximum (February close)
    assert 4.0 < monthly[8] < 6.0 and monthly.argmin() == 8  # September minimum
    shape = (monthly - monthly.min()) / (monthly.max() - monthly.min())
    observed = (NSIDC_2010S - NSIDC_2010S.min()) / (NSIDC_2010S.max() - NSIDC_2010S.min())
    assert np.abs(shape - observed).max() < 0.10, np.round(shape - observed, 3)
    # slow retreat in spring, fast in July-August, fast freeze-up in October-November
    assert monthly[3] - monthly[5] < monthly[6] - monthly[8]
    assert monthly[10] - monthly[8] > 0.45 * (monthly.max() - monthly.min())
    # interannual variability: the same month differs between the two years
    march = extent[months(times) == 3]
    assert march.std() > 0.02


def test_concentration_has_no_plateau_but_0_and_1(year128):
    """Per month, no value strictly between 0 and 1 holds over 2 % of the ice-covered cells."""
    _, times, x = year128
    m = months(times)
    for month in range(1, 13):
        sic = x[m == month][:, 1]
        icy = sic[sic > 0]
        inner = icy[icy < 1]
        _, counts = np.unique(inner, return_counts=True)
        assert counts.max() / icy.size < 0.02, (month, counts.max() / icy.size)
    # the winter pack keeps its exact 1 between leads; the summer pack is loose, 0.8-1, no floor
    winter = x[np.isin(m, (1, 2, 3))][:, 1]
    assert (winter[winter > 0] == 1).mean() > 0.5
    day = (times - times.astype("datetime64[M]")).astype("timedelta64[D]").astype(int) + 1
    pack = x[(m == 8) | ((m == 9) & (day <= 20))][:, 1]
    pack = pack[pack >= 0.5]
    assert (pack == 1).mean() < 0.01 and 0.8 <= np.median(pack) <= 0.97
    assert (pack < 0.8).mean() > 0.02 and np.percentile(pack, 1) < 0.78  # no floor at 0.8


def test_marginal_ice_zone_share_of_the_extent(year128):
    """MIZ (0.15-0.8) share of the extent: 2-10 % in January-April, 15-45 % in July-September
    (the targets of docs/synthetic_arctic.md, after Rolph et al. 2020)."""
    model, times, x = year128
    extent, miz = extent_and_miz(x, model.geometry.area / 1e6)
    share = monthly_means(miz / extent, times)
    assert ((share[:4] > 0.02) & (share[:4] < 0.10)).all(), np.round(share, 3)
    assert ((share[6:9] > 0.15) & (share[6:9] < 0.45)).all(), np.round(share, 3)
    assert share[6:9].min() > 3 * share[:4].max()


def test_thickness_peaks_in_spring_and_thins_through_summer(year128):
    model, times, x = year128
    pack = region(model, 82.0, 88.0, -150.0, -30.0)  # ice all year
    floe = x[:, 0][:, pack].mean(axis=1) / np.maximum(x[:, 1][:, pack].mean(axis=1), 1e-6)
    monthly = monthly_means(floe, times)
    assert monthly.argmax() in (3, 4)  # April or May
    assert monthly[4] > monthly[6] > monthly[8]  # May > July > September


def test_regions(year128):
    model, times, x = year128
    m = months(times)
    march, sept = x[m == 3], x[m == 9]
    floe = march[:, 0] / np.maximum(march[:, 1], 1e-6)
    north_greenland = region(model, 82.0, 86.0, -90.0, -30.0)
    siberian = region(model, 78.0, 84.0, 100.0, 160.0)
    assert 3.0 <= np.median(floe[:, north_greenland]) <= 5.0
    assert np.median(floe[:, siberian]) < 2.5
    norwegian = region(model, 63.0, 70.0, 0.0, 15.0)
    south_barents = region(model, 70.0, 73.0, 15.0, 35.0)
    assert (x[:, 1][:, norwegian] == 0).all(), "Atlantic water keeps the Norwegian Sea open"
    assert (march[:, 1][:, south_barents] < 0.15).mean() > 0.9
    for name, box in {
        "Hudson Bay": (56.0, 63.0, -92.0, -78.0),
        "Laptev Sea": (72.0, 77.0, 110.0, 135.0),
        "East Siberian Sea": (70.0, 75.0, 150.0, 175.0),
        "Chukchi Sea": (67.0, 72.0, -178.0, -160.0),
        "Kara Sea": (70.0, 77.0, 60.0, 90.0),
        "Baffin Bay": (68.0, 75.0, -70.0, -58.0),
    }.items():
        cells = region(model, *box)
        assert cells.sum() > 0, name
        assert (march[:, 1][:, cells] >= 0.15).mean() > 0.9, f"{name} frozen in March"
        assert (sept[:, 1][:, cells] >= 0.15).mean() < 0.3, f"{name} mostly open in September"


def test_beaufort_gyre_and_transpolar_drift(year128):
    model, _, x = year128
    g = model.geometry
    ice = x[:, 1] > 0
    u = np.where(ice, x[:, 3], np.nan)
    v = np.where(ice, x[:, 4], np.nan)
    count = ice.sum(axis=0)
    um = np.where(count > 0, np.nansum(u, axis=0) / np.maximum(count, 1), np.nan)
    vm = np.where(count > 0, np.nansum(v, axis=0) / np.maximum(count, 1), np.nan)
    # Gyre: clockwise (negative circulation) around 76 N 148 W, from the mean drift on a ring.
    gyre = region(model, 72.0, 80.0, -165.0, -130.0)
    xg, yg = model.x[gyre].mean(), model.y[gyre].mean()
    rx, ry = model.x - xg, model.y - yg
    ring = gyre & np.isfinite(um)
    circulation = np.nanmean((rx * vm - ry * um)[ring] / np.hypot(rx, ry)[ring])
    assert circulation < -0.005
    # Transpolar drift: near the pole the mean drift points towards Fram Strait (79 N, 0 E).
    pole = (g.lat > 86.0) & np.isfinite(um)
    fram = region(model, 78.0, 80.0, -5.0, 5.0)
    dx, dy = model.x[fram].mean() - model.x[pole], model.y[fram].mean() - model.y[pole]
    cos = (um[pole] * dx + vm[pole] * dy) / (np.hypot(um[pole], vm[pole]) * np.hypot(dx, dy))
    assert np.median(cos) > 0.6


def test_fast_ice_is_still_in_winter_and_moves_in_summer(year128):
    model, times, x = year128
    g = model.geometry
    m = months(times)
    near_coast = g.ocean & (g.coast_km < 0.5 * g.fast_width_km)
    assert near_coast.sum() > 20
    march = x[m == 3]
    frozen = (march[:, 1] == 1) & near_coast
    assert frozen.sum() > 0
    assert (march[:, 3][frozen] == 0).all() and (march[:, 4][frozen] == 0).all()
    aug = x[m == 8]
    moving = (aug[:, 1] > 0) & near_coast
    assert np.abs(aug[:, 3][moving]).mean() > 0.005


def top_tenth_share(d: np.ndarray) -> float:
    d = np.sort(d)[::-1]
    return float(d[: d.size // 10].sum() / d.sum())


def test_summer_deformation_is_higher_and_less_localised(year128):
    model, times, x = year128
    g = model.geometry
    out = {}
    for name, sel in {"winter": (1, 2, 3), "summer": (7, 8)}.items():
        means, shares = [], []
        for s in x[np.isin(months(times), sel)]:
            moving = (s[1] >= 0.5) & ((s[3] != 0) | (s[4] != 0))
            inner = ndimage.binary_erosion(moving, np.ones((3, 3), bool), border_value=0)
            total = total_deformation(s[3].astype(np.float64), s[4].astype(np.float64), g.dx, g.dy)[inner]
            means.append(total.mean())
            shares.append(top_tenth_share(total))
        out[name] = (np.mean(means), np.mean(shares))
    assert out["summer"][0] > 1.3 * out["winter"][0], out
    assert out["summer"][1] < out["winter"][1], out


def lkf_family_angles(damage_maps: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """Angle (deg) between the two dominant orientations of the LKF network.

    Power spectrum of the damage inside the pack, summed over wave-vector direction (mod 180
    degrees, 2-degree bins, band 4 .. n/4 cycles per domain): LKFs in one direction put their
    power on wave vectors perpendicular to them. The two highest lobes (at least 16 degrees
    apart), each refined by its power-weighted centroid, give the crossing angle.
    """
    n = damage_maps[0].shape[0]
    ky = np.fft.fftfreq(n)[:, None] * n
    kx = np.fft.fftfreq(n)[None, :] * n
    k = np.hypot(kx, ky)
    ang = np.degrees(np.arctan2(ky, kx)) % 180.0
    band = (k >= 4) & (k <= n / 4)
    hist = np.zeros(90)
    for f, mask in zip(damage_maps, masks):
        f = np.where(mask, f - f[mask].mean(), 0.0)
        power = np.abs(np.fft.fft2(f)) ** 2
        h, _ = np.histogram(ang[band], bins=90, range=(0, 180), weights=power[band])
        hist += h / h.sum()
    centres = np.arange(90) * 2.0 + 1.0
    smooth = np.convolve(np.r_[hist[-3:], hist, hist[:3]], np.ones(5) / 5, "same")[3:-3]

    def centroid(i: int) -> float:
        d = (centres - centres[i] + 90.0) % 180.0 - 90.0
        near = np.abs(d) <= 8.0
        return centres[i] + float((d[near] * hist[near]).sum() / hist[near].sum())

    i1 = int(np.argmax(smooth))
    dist = np.abs((centres - centres[i1] + 90.0) % 180.0 - 90.0)
    i2 = int(np.argmax(np.where(dist >= 16.0, smooth, 0.0)))
    a = abs((centroid(i2) - centroid(i1) + 90.0) % 180.0 - 90.0)
    return a


@pytest.fixture(scope="module")
def winter512():
    """Four February-March states, 5 days apart, on the 512 x 512 grid (12 km cells)."""
    times = synth_times("2009-02-01", "2009-03-31", "5D")[:4]
    model = SyntheticArctic(512, seed=0, dt_days=5.0)
    return model, model.states(times)


def drifting_pack(x: np.ndarray) -> np.ndarray:
    """Ice of concentration >= 0.5 that moves: what RGPS tracks (land-fast ice left out)."""
    return (x[:, 1] >= 0.5) & ((x[:, 3] != 0) | (x[:, 4] != 0))


def test_deformation_scales_like_sea_ice(winter512):
    """<eps_L^q> ~ L^-beta(q) over boxes of 1-32 cells (12-384 km) fully in the drifting pack:
    beta(1, 2, 3) about 0.2, 0.5, 1.0 (RGPS and neXtSIM: Marsan et al. 2004, Rampal et al. 2019)."""
    model, x = winter512
    g = model.geometry
    u, v = x[:, 3].astype(np.float64), x[:, 4].astype(np.float64)
    fit = deformation_scaling(u, v, drifting_pack(x), g.dx, g.dy, scales=(1, 2, 4, 8, 16, 32))
    assert fit.counts[-1] >= 100  # enough 384-km boxes for the third moment
    lo, hi = np.array([0.1, 0.35, 0.8]), np.array([0.3, 0.65, 1.2])
    assert ((fit.beta > lo) & (fit.beta < hi)).all(), fit.beta
    assert fit.beta[2] - 3 * fit.beta[0] > 0.2  # multifractal: beta convex, not q (1 - H)
    assert fit.residual.max() < 0.15  # close to a power law over the whole range (4 states)


def test_grid_scale_deformation_is_continuous_and_heavy_tailed(winter512):
    model, x = winter512
    g = model.geometry
    u, v = x[:, 3].astype(np.float64), x[:, 4].astype(np.float64)
    pdf = deformation_pdf(grid_deformation(u, v, drifting_pack(x), g.dx, g.dy))
    # a straight survival function over the decade above the 90th percentile
    assert 2.0 < pdf.tail_exponent < 5.0 and pdf.tail_r2 > 0.98 and pdf.tail_bend < 1.0, pdf.to_dict()
    # few rigid cells, land-fast ice included (it does not move at all)
    with_fast = grid_deformation(u, v, x[:, 1] >= 0.5, g.dx, g.dy)
    assert (with_fast < 1e-4).mean() < 0.3
    assert pdf.share_below[1e-4] < 0.05


def test_lkfs_cross_at_30_to_50_degrees(winter512):
    model, x = winter512
    masks = [interior_ice(s, model.geometry.ocean) for s in x]
    angle = lkf_family_angles([s[2] for s in x], masks)
    assert 30.0 <= angle <= 50.0, angle


def test_lkf_angle_measure_sees_a_known_network():
    """The angle measure on two sets of straight lines drawn 40 and 70 degrees apart."""
    n = 128
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    for true in (40.0, 70.0):
        maps = []
        for shift in range(4):
            f = np.zeros((n, n))
            for theta in (20.0, 20.0 + true):
                t = np.radians(theta)
                s = xx * np.cos(t) + yy * np.sin(t) + 3 * shift
                f = np.maximum(f, (np.abs((s % 17.0) - 8.5) < 0.7).astype(float))
            maps.append(f)
        got = lkf_family_angles(maps, [np.ones((n, n), bool)] * 4)
        assert abs(got - true) < 6.0, (true, got)


def test_leads_open_and_ridges_thicken_on_lkfs(year128):
    model, times, x = year128
    g = model.geometry
    lead_sic, ridge_gain, lead_gain = [], [], []
    for s in x[np.isin(months(times), (1, 2, 3))]:
        u, v = s[3].astype(np.float64), s[4].astype(np.float64)
        div = (np.roll(u, -1, 1) - np.roll(u, 1, 1)) / (2 * g.dx) + (np.roll(v, -1, 0) - np.roll(v, 1, 0)) / (2 * g.dy)
        div *= 86400.0
        inner = interior_ice(s, g.ocean) & (g.coast_km > 3 * model.cell_km) & (s[1] >= 0.5)
        floe = s[0] / np.maximum(s[1], 1e-6)
        local = np.maximum(ndimage.median_filter(floe, size=7), 1e-3)
        opening = inner & (div > 0.1)  # 1/day
        closing = inner & (div < -0.1)
        if opening.any():
            lead_sic.append(s[1][opening].mean())
            lead_gain.append((floe / local)[opening].mean())
        if closing.any():
            ridge_gain.append((floe / local)[closing].mean())
    assert lead_sic and ridge_gain
    assert np.mean(lead_sic) < 0.95  # leads: open water in a winter pack that is otherwise 1
    assert np.mean(lead_gain) < 0.9  # thin ice in leads
    assert np.mean(ridge_gain) > 1.1  # ridging where the ice converges


def test_advection_moves_a_field_by_the_displacement():
    f = np.zeros((32, 32))
    f[10, 10] = 1.0
    dx = np.full((32, 32), 10e3)
    u = np.full((32, 32), 2 * 10e3 / 86400.0)  # two cells per day along +x
    v = np.full((32, 32), -10e3 / 86400.0)  # one cell per day along -y
    g = advect(f, u, v, 86400.0, dx, dx)
    assert g[9, 12] == pytest.approx(1.0) and g.sum() == pytest.approx(1.0)


def test_damage_is_a_memory_relaxing_over_10_to_30_days(monkeypatch):
    """Without new deformation, damage stays with the ice and decays by exp(-t / tau), tau in 10-30 days."""
    import hpc_seaice.data.synth.model as sm

    model = SyntheticArctic(64, seed=2, dt_days=1.0)
    times = synth_times("2009-01-01", "2009-01-20", "1D")
    model.states(times[:10])
    start = model.damage.copy()
    ice0 = start > 0

    def no_deformation(eps, full):
        return np.zeros_like(eps)

    monkeypatch.setattr(sm, "damage_renewal", no_deformation)
    model.states(times[10:15])
    after = model.damage
    kept = after.sum() / start[ice0].sum()  # advection moves and spreads it, the total relaxes
    assert np.exp(-5.0 / 10.0) - 0.1 < kept < np.exp(-5.0 / 30.0) + 0.05
    assert np.corrcoef(start.ravel(), after.ravel())[0, 1] > 0.5  # carried, not reshuffled


def test_bounds_and_plateaus_all_year(year128):
    model, _, x = year128
    ocean = model.geometry.ocean
    sit, sic, damage, siu, siv = (x[:, k] for k in range(5))
    assert (x[:, :, ~ocean] == 0).all()
    assert sic.min() == 0.0 and sic.max() == 1.0 and damage.min() == 0.0 and damage.max() == 1.0
    assert sit.min() == 0.0
    none = sic == 0
    assert (sit[none] == 0).all() and (damage[none] == 0).all() and (siu[none] == 0).all() and (siv[none] == 0).all()
    assert (sit[sic > 0] > 0).all()


def test_lkfs_have_many_lengths(winter512):
    """LKF cores (damage exactly 1) are thin features from a few tens to thousands of km long."""
    model, x = winter512
    lengths = []
    for s in x:
        labels, _ = ndimage.label(s[2] >= 1.0, np.ones((3, 3), bool))
        cells = np.bincount(labels.ravel())[1:]
        lengths.extend(cells[cells >= 2] * model.cell_km)  # a one-cell-wide line: cells ~ length
    lengths = np.asarray(lengths)
    p10, p90 = np.percentile(lengths, [10, 90])
    assert p90 > 5 * p10 and lengths.max() > 1500.0 and p10 < 300.0
