"""A small sea-ice-like data set and constructed "models" written as samples files, for the verdict tests.

The states are built from Gaussian random fields with red spectra (large scales carry the power,
as in sea ice): an ice edge whose position moves with a random season (so the aggregates vary
from state to state), thickness = concentration x floe thickness, damage, and a non-divergent
drift where there is ice. Exact plateaus at sic = 0 and 1. The grid is 48 x 48 at 25 km on a
polar stereographic projection, so the thickness spectrum has 2 rings above 400 km, 10 between
100 and 400 km and 12 below 100 km.

Models (each ``N`` samples): fresh draws of the same generator (good), the same blurred
(smooth), uniform noise in the bounds, copies and blurred copies of training states, per-cell
shuffles of training states, a good model whose ice edge is softened (a worse MIZ), and fresh
draws with random Fourier phases (the right spectra, no structure).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from hpc_seaice.data.format.manifest import Layout, write_manifest
from hpc_seaice.data.format.samples_file import samples_dataset, write_samples
from hpc_seaice.data.format.shards import ShardWriter
from hpc_seaice.data.format.static import write_static

GRID = 48
SPACING_M = 25_000.0
R_EARTH = 6_371_000.0
NUM = {"train": 40, "validation": 40, "test": 40}
YEARS = {"train": "2012", "validation": "2017", "test": "2018"}


def lat_lon(n: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(n) - (n - 1) / 2) * SPACING_M
    y, x = np.meshgrid(c, c, indexing="ij")
    lat = 90.0 - 2.0 * np.degrees(np.arctan(np.hypot(x, y) / (2.0 * R_EARTH)))
    return lat, np.degrees(np.arctan2(y, x))


def land_mask(n: int = GRID) -> np.ndarray:
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    mask = np.ones((n, n), np.float32)
    mask[(y + x) < 8] = 0  # a land corner (3 % of the grid)
    return mask


def red_field(rng: np.random.Generator, n: int, slope: float) -> np.ndarray:
    """A Gaussian random field with isotropic power ~ k^-slope, unit std."""
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    amp = np.where(k > 0, np.maximum(k, 1.0 / n) ** (-slope / 2), 0.0)
    f = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(n, n))) * amp))
    return (f - f.mean()) / f.std()


def states(rng: np.random.Generator, num: int, n: int = GRID) -> np.ndarray:
    mask = land_mask(n)
    x = np.arange(n)[None, :] / n
    out = np.zeros((num, 5, n, n), np.float32)
    for i in range(num):
        season = rng.uniform(0, 2 * np.pi)
        edge = 2.5 * (0.45 + 0.15 * np.cos(season) - x) + 0.35 * red_field(rng, n, 3.0) + 0.15 * red_field(rng, n, 2.0)
        sic = np.clip(0.5 + 1.5 * edge, 0.0, 1.0)
        floe = np.clip(1.6 + 0.5 * red_field(rng, n, 3.0) + 0.2 * red_field(rng, n, 2.0), 0.1, None)
        ice = sic > 0
        psi = red_field(rng, n, 4.0)
        out[i, 0] = sic * floe
        out[i, 1] = sic
        out[i, 2] = np.where(ice, np.clip(0.3 + 0.25 * red_field(rng, n, 2.5), 0.0, 1.0), 0.0)
        out[i, 3] = np.where(ice, 0.05 * np.gradient(psi, axis=0), 0.0)
        out[i, 4] = np.where(ice, -0.05 * np.gradient(psi, axis=1), 0.0)
    return out * mask


def write_data(root: Path, seed: int = 0, splits: tuple[str, ...] = tuple(NUM)) -> dict[str, np.ndarray]:
    """The data set (train 2012, validation 2017, test 2018; ``splits`` of them) and its states per split."""
    rng = np.random.default_rng(seed)
    parts = {split: states(rng, num) for split, num in NUM.items() if split in splits}
    times = {s: np.datetime64(f"{YEARS[s]}-01-01T00") + np.arange(NUM[s]) * np.timedelta64(7, "D") for s in parts}
    fields = np.concatenate([parts[s] for s in parts])
    stamps = np.concatenate([times[s] for s in parts]).astype("datetime64[s]")
    writer = ShardWriter(root, Layout.fields((GRID, GRID)), 32)
    writer.write(fields, stamps)
    writer.close()
    write_manifest(root, writer.build_manifest())
    lat, lon = lat_lon()
    train = parts["train"]
    write_static(root, land_mask(), lat, lon, mean=train.mean(axis=(0, 2, 3)), std=train.std(axis=(0, 2, 3)) + 1e-3)
    return parts


def blur(fields: np.ndarray, sigma: float) -> np.ndarray:
    """Every field blurred by a Gaussian of ``sigma`` cells, concentration and damage kept in [0, 1]."""
    out = gaussian_filter(fields.astype(np.float64), sigma=(0, 0, sigma, sigma), mode="nearest")
    out[:, 1:3] = np.clip(out[:, 1:3], 0.0, 1.0)
    return (out * land_mask()).astype(np.float32)


def noise(rng: np.random.Generator, num: int) -> np.ndarray:
    x = np.stack(
        [
            rng.uniform(0, 3, (num, GRID, GRID)),
            rng.uniform(0, 1, (num, GRID, GRID)),
            rng.uniform(0, 1, (num, GRID, GRID)),
            rng.uniform(-0.1, 0.1, (num, GRID, GRID)),
            rng.uniform(-0.1, 0.1, (num, GRID, GRID)),
        ],
        axis=1,
    )
    return (x * land_mask()).astype(np.float32)


def shuffle_cells(rng: np.random.Generator, real: np.ndarray) -> np.ndarray:
    """Each cell takes all its variables from an independently chosen real state: right marginals, no space."""
    n = real.shape[0]
    pick = rng.integers(0, n, size=(n, GRID, GRID))
    y, x = np.meshgrid(np.arange(GRID), np.arange(GRID), indexing="ij")
    return real[pick, :, y, x].transpose(0, 3, 1, 2).copy()


def random_phases(rng: np.random.Generator, real: np.ndarray) -> np.ndarray:
    """Each field's own amplitude spectrum with random phases, clipped to the bounds: the spectra of
    real states (up to the clipping), none of their structure (no ice edge, no leads)."""
    spectrum = np.abs(np.fft.fft2(real.astype(np.float64)))
    phases = np.fft.fft2(rng.normal(size=real.shape))
    phases /= np.abs(phases)
    phases[..., 0, 0] = 1.0  # the mean kept
    out = np.real(np.fft.ifft2(spectrum * phases))
    out[:, 0] = np.clip(out[:, 0], 0.0, None)
    out[:, 1:3] = np.clip(out[:, 1:3], 0.0, 1.0)
    return (out * land_mask()).astype(np.float32)


def soft_edge(fields: np.ndarray, gain: float = 0.55) -> np.ndarray:
    """The ice edge softened: concentrations pulled towards 0.5 inside the edge zone (more MIZ, vaguer cover)."""
    out = fields.copy()
    sic = out[:, 1]
    zone = (sic > 0) & (sic < 1)
    widened = gaussian_filter(zone.astype(np.float64), sigma=(0, 1.0, 1.0)) > 0.05
    out[:, 1] = np.where(widened, 0.5 + gain * (sic - 0.5), sic) * land_mask()
    return out


def write_model(path: Path, fields: np.ndarray, name: str) -> Path:
    lat, lon = lat_lon()
    return write_samples(path, samples_dataset(fields, land_mask(), lat, lon, {"model": name}))
