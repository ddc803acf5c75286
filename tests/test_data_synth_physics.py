"""The synthetic sea ice, property by property, with numbers.

Extent with true cell areas (March 14-16, September 4-6 million km^2, fast melt, slow
freeze-up), regions (multi-year ice north of Greenland, open Atlantic water, seasonal marginal
seas), drift (Beaufort Gyre, Transpolar Drift out through Fram Strait, fast ice), deformation
concentrated on LKFs crossing at 30-50 degrees, leads and ridges, damage memory.

Deformation is computed here independently of the generator: centred differences with the true
cell sizes, total = sqrt(divergence^2 + shear^2).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from hpc_seaice.data.synth.dynamics import advect
from hpc_seaice.data.synth.generate import synth_times
from hpc_seaice.data.synth.model import JUMP_REF, SyntheticArctic


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


def test_extent_with_true_cell_areas(year128):
    model, times, x = year128
    area_km2 = model.geometry.area / 1e6
    extent = ((x[:, 1] >= 0.15) * area_km2).sum(axis=(1, 2)) / 1e6
    m = months(times)
    assert 14.0 < extent[m == 3].mean() < 16.0
    assert 4.0 < extent[m == 9].mean() < 6.0
    # fast melt, slow freeze-up: the steepest 5-day loss beats the steepest 5-day gain
    change = np.diff(extent)
    assert -change.min() > 1.3 * change.max() > 0


def test_winter_pack_is_exactly_one_summer_pack_is_loose(year128):
    model, times, x = year128
    ocean = model.geometry.ocean
    m = months(times)
    march = x[m == 3][:, 1][:, ocean]
    ice = march > 0
    assert (march[ice] == 1.0).mean() > 0.7  # exact plateau between leads
    day = (times - times.astype("datetime64[M]")).astype("timedelta64[D]").astype(int) + 1
    sept = x[(m == 9) & (day <= 20)]  # before the freeze-up starts
    pack = sept[:, 1][:, ocean]
    pack = pack[pack >= 0.5]
    assert pack.max() <= 0.95 + 1e-6 and 0.8 <= np.median(pack) <= 0.95


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


def test_deformation_concentrates_on_lkfs(year128):
    model, times, x = year128
    g = model.geometry
    shares = []
    for s in x[np.isin(months(times), (1, 2, 3, 4))]:
        total = total_deformation(s[3].astype(np.float64), s[4].astype(np.float64), g.dx, g.dy)
        d = np.sort(total[interior_ice(s, g.ocean)])[::-1]
        shares.append(d[: d.size // 10].sum() / d.sum())
    assert np.mean(shares) > 0.55 and np.min(shares) > 0.45
    # the reference: the smooth drift (no plates) spreads its deformation much more evenly
    u, v = np.broadcast_to(g.u_mean, x.shape[2:]), np.broadcast_to(g.v_mean, x.shape[2:])
    d = np.sort(total_deformation(u, v, g.dx, g.dy)[interior_ice(x[0], g.ocean)])[::-1]
    assert d[: d.size // 10].sum() / d.sum() < 0.4


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


def test_lkfs_cross_at_30_to_50_degrees(year128):
    model, times, x = year128
    winter = x[np.isin(months(times), (1, 2, 3, 4))]
    masks = [interior_ice(s, model.geometry.ocean) for s in winter]
    angle = lkf_family_angles([s[2] for s in winter], masks)
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
        inner = interior_ice(s, g.ocean) & (g.coast_km > 3 * model.cell_km)
        floe = s[0] / np.maximum(s[1], 1e-6)
        local = np.maximum(ndimage.median_filter(floe, size=7), 1e-3)
        opening = inner & (div * g.dx > 0.5 * JUMP_REF)
        closing = inner & (div * g.dx < -0.5 * JUMP_REF)
        if opening.any():
            lead_sic.append(s[1][opening].mean())
            lead_gain.append((floe / local)[opening].mean())
        if closing.any():
            ridge_gain.append((floe / local)[closing].mean())
    assert lead_sic and ridge_gain
    assert np.mean(lead_sic) < 0.95  # leads: open water in a winter pack that is otherwise 1
    assert np.mean(lead_gain) < 0.9  # thin ice in leads
    assert np.mean(ridge_gain) > 1.1  # ridging on convergent LKFs


def test_advection_moves_a_field_by_the_displacement():
    f = np.zeros((32, 32))
    f[10, 10] = 1.0
    dx = np.full((32, 32), 10e3)
    u = np.full((32, 32), 2 * 10e3 / 86400.0)  # two cells per day along +x
    v = np.full((32, 32), -10e3 / 86400.0)  # one cell per day along -y
    g = advect(f, u, v, 86400.0, dx, dx)
    assert g[9, 12] == pytest.approx(1.0) and g.sum() == pytest.approx(1.0)


def test_damage_is_a_memory_relaxing_over_10_to_30_days(monkeypatch):
    """Without new LKFs, damage stays with the ice and decays by exp(-t / tau), tau in 10-30 days."""
    import hpc_seaice.data.synth.model as sm

    model = SyntheticArctic(64, seed=2, dt_days=1.0)
    times = synth_times("2009-01-01", "2009-01-20", "1D")
    model.states(times[:10])
    start = model.damage.copy()
    ice0 = start > 0.5

    def no_lkfs(f1, f2, gate, threshold):
        return np.zeros(f1.shape, bool), np.zeros(f1.shape, np.float32)

    monkeypatch.setattr(sm, "lkf_lines", no_lkfs)
    model.states(times[10:15])
    after = model.damage
    kept = after[ice0].sum() / start[ice0].sum()
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


def test_lkfs_have_many_lengths(year128):
    """LKF cores (damage exactly 1) are thin features from about 100 km to thousands of km long."""
    model, times, x = year128
    lengths = []
    for s in x[np.isin(months(times), (1, 2, 3))]:
        labels, _ = ndimage.label(s[2] >= 1.0, np.ones((3, 3), bool))
        cells = np.bincount(labels.ravel())[1:]
        lengths.extend(cells[cells >= 2] * model.cell_km)  # a one-cell-wide line: cells ~ length
    lengths = np.asarray(lengths)
    p10, p90 = np.percentile(lengths, [10, 90])
    assert p90 > 5 * p10 and lengths.max() > 1500.0 and p10 < 300.0


def test_most_deformation_is_in_the_most_deformed_tenth_of_all_ice(year128):
    """The issue's number over every ice cell with a clean ocean stencil (edges and coasts
    included), with spacings measured here from lat/lon (haversine, not the grid's scale factor)."""
    model, times, x = year128
    g = model.geometry
    lat, lon = np.radians(g.lat), np.radians(g.lon)

    def haversine(a, b):
        h = np.sin((lat[b] - lat[a]) / 2) ** 2 + np.cos(lat[a]) * np.cos(lat[b]) * np.sin((lon[b] - lon[a]) / 2) ** 2
        return 2 * 6371e3 * np.arcsin(np.sqrt(h))

    dx = np.empty_like(lat)
    dy = np.empty_like(lat)
    dx[:, 1:-1] = haversine((slice(None), slice(0, -2)), (slice(None), slice(2, None))) / 2
    dy[1:-1, :] = haversine((slice(0, -2), slice(None)), (slice(2, None), slice(None))) / 2
    inner = ndimage.binary_erosion(g.ocean, np.ones((3, 3), bool), border_value=0)
    assert np.abs(dx[inner] / g.dx[inner] - 1).max() < 0.01  # the sphere vs the ellipsoid
    shares = []
    for s in x[np.isin(months(times), (1, 2, 3, 4))]:
        total = total_deformation(s[3].astype(np.float64), s[4].astype(np.float64), dx, dy)
        d = np.sort(total[inner & (s[1] > 0)])[::-1]
        shares.append(d[: d.size // 10].sum() / d.sum())
    assert np.mean(shares) > 0.55 and np.min(shares) > 0.5, (np.mean(shares), np.min(shares))
