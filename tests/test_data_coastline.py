"""The committed coastline on the polar-stereographic grid, against known geography.

The file was made from the GLOBE land mask; these tests only need the committed file, and check
places any map shows: Greenland and Svalbard are land, the North Pole is ocean, and the
passages that matter for sea-ice export (Fram Strait, Bering Strait, the Nares Strait and the
Parry Channel through the Canadian Archipelago) are open at 512 x 512.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from hpc_seaice.data.geo.coastline import COASTLINE_FILE, main, ocean_mask
from hpc_seaice.data.geo.grid import Grid, forward


@pytest.fixture(scope="module")
def ocean512() -> np.ndarray:
    return ocean_mask(512)


def cell(lat: float, lon: float, n: int = 512) -> tuple[int, int]:
    """Row, column of the cell holding a place (independent of the grid module's inverse)."""
    g = Grid(n)
    x, y = forward(np.array(lat), np.array(lon))
    col = int(np.floor((float(x) - (g.x[0] - g.cell_m / 2)) / g.cell_m))
    row = int(np.floor((float(y) - (g.y[0] - g.cell_m / 2)) / g.cell_m))
    assert 0 <= row < n and 0 <= col < n, f"({lat}, {lon}) is outside the domain"
    return row, col


def connected_within(ocean: np.ndarray, a: tuple[float, float], b: tuple[float, float], box: tuple) -> bool:
    """Are places a and b joined by ocean that stays inside the lat/lon box (lat0, lat1, lon0, lon1)?"""
    lat, lon = Grid(ocean.shape[0]).lat_lon()
    lat0, lat1, lon0, lon1 = box
    inside = ocean & (lat >= lat0) & (lat <= lat1) & (lon >= lon0) & (lon <= lon1)
    labels, _ = ndimage.label(inside)
    la, lb = labels[cell(*a)], labels[cell(*b)]
    return bool(la) and la == lb


def test_file_is_small_and_half_ocean(ocean512):
    assert COASTLINE_FILE.stat().st_size < 200_000
    assert 0.45 < ocean512.mean() < 0.65


@pytest.mark.parametrize(
    "place, lat, lon",
    [
        ("central Greenland", 72.0, -40.0),
        ("north Greenland", 81.0, -40.0),
        ("Spitsbergen (Svalbard)", 78.7, 16.0),
        ("Ellesmere Island", 80.0, -80.0),
        ("Novaya Zemlya", 74.0, 56.0),
        ("Siberia", 70.0, 100.0),
        ("Alaska", 65.0, -150.0),
    ],
)
def test_known_land(ocean512, place, lat, lon):
    assert not ocean512[cell(lat, lon)], place


@pytest.mark.parametrize(
    "place, lat, lon",
    [
        ("North Pole", 90.0, 0.0),
        ("Fram Strait", 79.0, 0.0),
        ("Beaufort Sea", 73.0, -145.0),
        ("Barents Sea", 74.0, 35.0),
        ("Hudson Bay", 60.0, -85.0),
        ("Baffin Bay", 73.0, -65.0),
        ("Norwegian Sea", 68.0, 2.0),
        ("Bering Sea", 62.0, -175.0),
    ],
)
def test_known_ocean_connected_to_the_arctic(ocean512, place, lat, lon):
    assert ocean512[cell(lat, lon)], place  # the mask keeps only water connected to the pole


@pytest.mark.parametrize(
    "passage, a, b, box",
    [
        ("Fram Strait", (77.5, -2.0), (81.0, 0.0), (76.0, 82.0, -12.0, 8.0)),
        ("Bering Strait", (64.5, -169.0), (67.0, -169.0), (64.0, 67.5, -175.0, -162.0)),
        ("Nares Strait", (77.5, -73.0), (82.3, -58.0), (76.5, 83.0, -80.0, -55.0)),
        ("Parry Channel", (74.5, -120.0), (74.2, -82.0), (73.4, 75.4, -125.0, -78.0)),
        ("Amundsen Gulf to Beaufort Sea", (70.0, -124.0), (71.5, -128.0), (68.5, 72.5, -132.0, -118.0)),
    ],
)
def test_passages_are_open_at_512(ocean512, passage, a, b, box):
    assert connected_within(ocean512, a, b, box), passage


def test_closing_a_passage_is_detected(ocean512):
    """The connectivity check can fail: cut Fram Strait along 79 N and it reports closed."""
    lat, lon = Grid(512).lat_lon()
    cut = ocean512 & ~((np.abs(lat - 79.0) < 0.3) & (lon > -20.0) & (lon < 15.0))
    assert not connected_within(cut, (77.5, -2.0), (81.0, 0.0), (76.0, 82.0, -12.0, 8.0))


def test_coarser_grids_cover_the_same_domain():
    fine = ocean_mask(512).astype(float)
    for n in (256, 128, 64, 32):
        coarse = ocean_mask(n)
        b = 512 // n
        block = fine.reshape(n, b, n, b).mean(axis=(1, 3)) > 0.5
        assert (block == coarse).mean() > 0.9, n
        assert coarse[cell(90.0, 0.0, n)] and not coarse[cell(75.0, -40.0, n)]


def test_cli_prints_fractions(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "512 x 512" in out and "ocean fraction" in out


def ocean_or_outside(ocean: np.ndarray, lat: float, lon: float) -> bool:
    """Is the place ocean on this grid? False when it lies outside the domain."""
    g = Grid(ocean.shape[0])
    x, y = forward(np.array(lat), np.array(lon))
    col = int(np.floor((float(x) - (g.x[0] - g.cell_m / 2)) / g.cell_m))
    row = int(np.floor((float(y) - (g.y[0] - g.cell_m / 2)) / g.cell_m))
    inside = 0 <= row < g.n and 0 <= col < g.n
    return bool(inside and ocean[row, col])


@pytest.mark.parametrize(
    "place, lat, lon",
    [
        ("Iceland", 64.9, -18.5),
        ("Novaya Zemlya, northern island", 75.5, 60.0),
        ("Great Bear Lake", 66.0, -121.0),
        ("Great Slave Lake", 61.7, -114.0),
        ("Lake Superior", 47.5, -87.5),
        ("Lake Inari", 69.0, 27.7),
        ("Gulf of Bothnia (its link to the ocean is outside the domain)", 63.0, 20.0),
        ("Caspian Sea", 46.0, 51.0),
        ("Black Sea", 43.5, 34.0),
    ],
)
def test_land_lakes_and_isolated_seas_are_not_ocean(ocean512, place, lat, lon):
    assert not ocean_or_outside(ocean512, lat, lon), place


@pytest.mark.parametrize(
    "passage, a, b, box",
    [
        ("Kara Gate (Barents to Kara Sea)", (70.0, 55.0), (70.0, 61.0), (69.3, 71.5, 54.0, 62.0)),
        ("Hudson Strait (Hudson Bay to Labrador Sea)", (60.0, -80.0), (61.0, -64.0), (58.0, 65.0, -82.0, -62.0)),
        ("Denmark Strait", (68.0, -23.0), (65.0, -30.0), (63.0, 69.5, -35.0, -18.0)),
        ("Barents Sea opening", (72.0, 20.0), (74.0, 35.0), (70.0, 76.0, 15.0, 40.0)),
    ],
)
def test_more_passages_are_open_at_512(ocean512, passage, a, b, box):
    assert connected_within(ocean512, a, b, box), passage


def test_file_coordinates_are_the_grid():
    with np.load(COASTLINE_FILE) as f:
        assert f["land_counts"].shape == (512, 512) and int(f["land_counts"].max()) <= 16
        assert np.allclose(f["x_m"], Grid(512).x) and np.allclose(f["y_m"], Grid(512).y)


@pytest.mark.parametrize("n", [256, 128, 64, 32])
def test_coarse_grids_keep_the_ocean_area_and_the_marginal_seas(n):
    """Same domain, same sea: the ocean area (true cell areas) agrees with 512 x 512 within 2 %,
    and seas joined to the Arctic by straits narrower than a coarse cell stay ocean."""
    fine = ocean_mask(512)
    coarse = ocean_mask(n)
    area_fine = (Grid(512).spacing()[2] * fine).sum()
    area_coarse = (Grid(n).spacing()[2] * coarse).sum()
    assert abs(area_coarse / area_fine - 1.0) < 0.02, (n, area_coarse / area_fine)
    for place, lat, lon in [
        ("Hudson Bay", 60.0, -85.0),
        ("Baffin Bay", 73.0, -65.0),
        ("Barents Sea", 74.0, 35.0),
        ("Norwegian Sea", 68.0, 2.0),
        ("Beaufort Sea", 73.0, -145.0),
    ]:
        assert ocean_or_outside(coarse, lat, lon), (n, place)
    if n >= 64:
        assert ocean_or_outside(coarse, 65.5, 38.0), (n, "White Sea")
    # one body of water (cells touching at a corner are joined)
    assert ndimage.label(coarse, np.ones((3, 3), bool))[1] == 1


@pytest.mark.parametrize("content", [None, b"not an npz"])
def test_cli_names_a_missing_or_broken_file_in_one_line(tmp_path, capsys, content):
    path = tmp_path / "coast.npz"
    if content is not None:
        path.write_bytes(content)
    assert main(["--out", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]
