"""The time-stepping synthetic Arctic: one state [5, H, W] (sit, sic, damage, siu, siv) per step.

Why this structure: the metrics of the project look at the ice edge and the marginal ice zone
(sic plateaus at exactly 0 and 1), at the spectra of every field, and at the deformation of the
drift. So each state is built from

- the ice edge: a climatological freezing order plus a random anomaly, thresholded where the
  ice-covered area (true cell areas) equals the extent target of the day; a linear ramp of
  concentration across the marginal ice zone, widest in summer;
- the drift: Beaufort Gyre and Transpolar Drift plus a random synoptic (wind-driven) stream
  function, made piecewise rigid between the active LKFs (see ``synth_dynamics``), and zero in
  land-fast ice along the coasts in winter;
- leads (lower concentration, thinner ice) where LKFs open and ridges (thicker ice) where they
  close, from the divergence of that drift;
- damage, a memory field carried with the ice.

Random ingredients are spectral AR(1) fields (``synth_fields``); everything comes from one
``numpy.random.Generator`` seeded with the data set's seed.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from scipy import ndimage

from hpc_seaice.data.geo.deformation import divergence
from hpc_seaice.data.synth.climate import (
    YEAR_DAYS,
    day_of_year,
    extent_climatology,
    make_geometry,
    smoothstep,
    summer_weight,
    thickness_cycle,
    winter_weight,
)
from hpc_seaice.data.synth.dynamics import advect, fill_from_neighbours, lkf_lines, rigid_plates
from hpc_seaice.data.synth.fields import SpectralAR1, anisotropic, power_law, unit_spectrum, wavenumbers

DAY_S = 86400.0
LKF_CROSSING_DEG = 40.0  # angle between the two LKF families
WIND_SPEED = 0.06  # rms of the synoptic drift, m/s
EDGE_NOISE_KM = 120.0  # rms shift of the ice edge by the random anomaly
JUMP_REF = 0.03  # velocity jump across an LKF (m/s) that opens a full lead or a full ridge
LKF_GATE = -0.8  # LKFs are active where the (unit-variance) gate field exceeds this


class SyntheticArctic:
    """The generator: ``states(times)`` gives samples [T, 5, n, n] float32.

    Successive calls continue the same trajectory, whatever the number of steps per call; time
    steps are assumed ``dt_days`` apart.
    """

    def __init__(self, grid: int, seed: int, dt_days: float) -> None:
        self.geometry = g = make_geometry(grid)
        self.grid = grid
        self.dt_days = dt_days
        self.rng = np.random.default_rng(seed)
        # The extent anomaly has its own stream: drawing it from the fields' generator would
        # interleave the two by block, so a trajectory would depend on how it is cut into calls.
        self.rng_extent = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        self.ocean_f32 = g.ocean.astype(np.float32)
        self.x, self.y = g.grid.xy()
        self.cell_km = g.grid.cell_m / 1e3
        ky, kx, k = wavenumbers(grid)
        rot = float(self.rng.uniform(0.0, 180.0))
        k_hi = float(np.clip(grid / 16.0, 4.0, 32.0))
        spread = 10.0

        def tau(days: float) -> np.ndarray:
            return days / (1.0 + k / 8.0)

        spectra = [
            unit_spectrum(power_law(k, 3.0, 2.0), kx, grid),  # 0 ice-edge anomaly
            unit_spectrum(power_law(k, 3.2, 2.0), kx, grid),  # 1 thickness anomaly
            unit_spectrum(anisotropic(ky, kx, rot, 2.5, k_hi, spread), kx, grid),  # 2 LKF family 1
            unit_spectrum(anisotropic(ky, kx, rot + LKF_CROSSING_DEG, 2.5, k_hi, spread), kx, grid),  # 3 family 2
            unit_spectrum(power_law(k, 3.0, 3.0), kx, grid),  # 4 LKF activity gate
            unit_spectrum(power_law(k, 4.5, 1.5), kx, grid),  # 5 synoptic stream function
        ]
        lkf_tau = np.full_like(k, 60.0)  # the LKF network persists: its contours must not jitter
        taus = [tau(10.0), tau(30.0), lkf_tau, lkf_tau, np.full_like(k, 10.0), tau(6.0)]
        self.fields = SpectralAR1(self.rng, grid, dt_days, spectra=spectra, taus=taus)
        # rms |grad psi| per cell of the unit stream function, to scale the wind drift to m/s.
        w = np.where((kx == 0) | (kx == grid // 2), 1.0, 2.0)
        grad_rms = math.sqrt(float((w * spectra[5] ** 2 * k**2).sum())) * 2.0 * math.pi / grid
        # m/s per unit gradient, slowed near the coasts like the mean drift
        self.wind_coast = WIND_SPEED / max(grad_rms, 1e-12) * (1.0 - np.exp(-np.maximum(g.coast_km, 0.0) / 120.0))
        self.interannual = 0.0
        self.damage: np.ndarray | None = None  # the memory field
        self.tau_damage = 10.0 + 20.0 * g.multiyear  # relaxation time, days
        ocean = g.ocean
        self.ocean_area_km2 = g.area[ocean] / 1e6
        self.damage_decay = np.exp(-dt_days / self.tau_damage)

    # ----------------------------------------------------------------------------------------

    def _extent_targets(self, times: np.ndarray) -> np.ndarray:
        """Extent (1e6 km^2) per time: climatology plus an interannual AR(1) anomaly."""
        rho = math.exp(-self.dt_days / YEAR_DAYS)
        base = extent_climatology(times)
        out = np.empty(len(times))
        for i, z in enumerate(self.rng_extent.standard_normal(len(times))):
            self.interannual = rho * self.interannual + math.sqrt(1.0 - rho**2) * 0.25 * float(z)
            out[i] = base[i] + self.interannual
        return out

    def _threshold(self, potential: np.ndarray, extent: float) -> float:
        """Potential above which the ocean area equals ``extent`` (1e6 km^2).

        An area-weighted histogram of the potential (4096 bins, interpolated within the bin)
        instead of a sort: the threshold is needed at every step of a 512 x 512 stream.
        """
        p = potential[self.geometry.ocean]
        lo, hi = float(p.min()), float(p.max()) + 1e-6
        bins = 4096
        idx = np.minimum(((p - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)
        area = np.bincount(idx, weights=self.ocean_area_km2, minlength=bins)[::-1]  # from the top
        cum = np.cumsum(area) / 1e6
        i = int(np.searchsorted(cum, extent))
        if i >= bins:
            return -np.inf
        before = cum[i - 1] if i > 0 else 0.0
        frac = (extent - before) / max(area[i] / 1e6, 1e-12)
        top = hi - i * (hi - lo) / bins
        return top - frac * (hi - lo) / bins

    def next_state(self, time: np.datetime64) -> np.ndarray:
        """One sample [5, n, n] (a block of one; see :meth:`states`)."""
        return self.states(np.array([time], dtype="datetime64[s]"))[0]

    def states(self, times: np.ndarray) -> np.ndarray:
        """Samples [T, 5, n, n] float32 at the next ``len(times)`` steps of the trajectory."""
        times = np.asarray(times, dtype="datetime64[s]")
        n = len(times)
        f = scipy.fft.irfft2(self.fields.states(n), s=(self.grid, self.grid), norm="forward", workers=1)
        targets = self._extent_targets(times)
        doys = day_of_year(times)
        out = np.empty((n, 5, self.grid, self.grid), np.float32)
        for t in range(n):
            out[t] = self._one_state(f[t].astype(np.float64), float(targets[t]), float(doys[t]))
        return out

    def _one_state(self, f: np.ndarray, extent: float, doy: float) -> np.ndarray:
        g = self.geometry
        edge_anom, thick_anom, f1, f2, gate, psi = f
        summer = float(summer_weight(doy))
        winter = float(winter_weight(doy))

        # Ice edge and marginal ice zone.
        potential = g.coldness + EDGE_NOISE_KM * edge_anom
        theta = self._threshold(potential, extent)
        margin = potential - theta  # km inside the ice edge
        miz_km = max(80.0, 1.2 * self.cell_km) * (1.0 + 1.5 * summer)
        sic = np.clip(margin / miz_km + 0.15, 0.0, 1.0) * g.ocean
        ice = sic > 0.0

        # Drift: climatology + synoptic wind, rigid between active LKFs, zero in fast ice.
        psi_y, psi_x = np.gradient(psi)
        u_s = g.u_mean + self.wind_coast * psi_y
        v_s = g.v_mean - self.wind_coast * psi_x
        crack, lkf = lkf_lines(f1, f2, gate, LKF_GATE)
        crack &= ice
        fast = ice & (sic >= 1.0) & (g.coast_km < winter * g.fast_width_km)
        plates = ice & ~crack & ~fast
        u, v, _ = rigid_plates(u_s, v_s, plates, self.x, self.y)
        u, v = fill_from_neighbours([u, v], plates | fast, crack)
        u[~ice] = 0.0
        v[~ice] = 0.0
        u[fast] = 0.0
        v[fast] = 0.0

        # Leads and ridges on the LKFs, from the velocity jump across them.
        jump = divergence(u, v, g.dx, g.dy) * g.dx
        near_crack = crack | (ndimage.binary_dilation(crack, structure=np.ones((3, 3), bool)) & ice)
        lead = np.where(near_crack, np.clip(jump / JUMP_REF, 0.0, 1.0), 0.0)
        ridge = np.where(near_crack, np.clip(-jump / JUMP_REF, 0.0, 1.0), 0.0)
        loose = np.clip(0.5 - 0.3 * thick_anom, 0.0, 1.0)
        pack_sic = 1.0 - summer * (0.05 + 0.15 * loose)  # 1 in winter, 0.8-0.95 in summer
        sic = np.minimum(sic, np.minimum(pack_sic, 1.0 - 0.35 * lead)) * ice

        age = smoothstep(margin, 0.0, 900.0)  # young ice near the edge, old ice far inside
        floe = g.thickness * float(thickness_cycle(doy)) * (0.3 + 0.7 * age)
        floe = floe * np.exp(0.15 * thick_anom) * (1.0 - 0.6 * lead) * (1.0 + 0.5 * ridge)
        sit = sic * np.maximum(floe, 0.05)

        # Damage memory: carried with the ice, relaxing, renewed on active LKFs.
        dt_s = self.dt_days * DAY_S
        if self.damage is None:
            self.damage = np.zeros_like(sic)
        else:
            self.damage = advect(self.damage, u, v, dt_s, g.dx, g.dy) * self.damage_decay
        self.damage = np.maximum(self.damage, lkf * ice)
        background = 0.1 + 0.6 * (1.0 - sic) + 0.25 * summer
        damage = np.where(ice, np.clip(np.maximum(self.damage, background), 0.0, 1.0), 0.0)
        self.damage = np.where(ice, self.damage, 0.0)
        return np.stack([sit, sic, damage, u, v]).astype(np.float32) * self.ocean_f32
