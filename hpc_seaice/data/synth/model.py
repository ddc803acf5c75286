"""The time-stepping synthetic Arctic: one state [5, H, W] (sit, sic, damage, siu, siv) per step.

Why this structure: the metrics of the project look at the ice edge and the marginal ice zone
(sic plateaus at exactly 0 and 1, the MIZ between 0.15 and 0.8), at the spectra of every field,
and at the deformation of the drift. So each state is built from

- the ice edge: a climatological freezing order plus a random anomaly, thresholded where the
  area inside the edge (true cell areas) equals the extent target of the day
  (:mod:`~hpc_seaice.data.synth.seasons`: the 2010s NSIDC cycle); a smooth concentration ramp
  from 0.15 at the edge to the pack, widest in summer, and a thin fringe below 0.15 outside;
- a continuous pack concentration: 1 in the winter pack except in leads, a loose summer pack
  (0.8-1 from a random field, no floor), lower in opening leads;
- the drift: Beaufort Gyre and Transpolar Drift, a smooth synoptic (wind-driven) part, a
  multifractal part (:mod:`~hpc_seaice.data.synth.cascade`) that gives the deformation its
  observed scaling, and slips on two crossing families of LKFs
  (:mod:`~hpc_seaice.data.synth.dynamics`); zero in land-fast ice along the coasts in winter;
  stronger and less intermittent in summer;
- leads (lower concentration, thinner ice) where the ice opens and ridges (thicker ice) where
  it closes, from the divergence of that drift;
- damage, a memory field carried with the ice and renewed where it deforms.

Random ingredients are spectral AR(1) fields (:mod:`~hpc_seaice.data.synth.fields`) and white
noise carried in time; everything comes from generators seeded with the data set's seed.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from hpc_seaice.data.synth.cascade import MultifractalDrift, cascade_spectrum
from hpc_seaice.data.synth.climate import make_geometry
from hpc_seaice.data.synth.dynamics import advect, damage_renewal, fault_slip
from hpc_seaice.data.synth.fields import SpectralAR1, anisotropic, power_law, unit_spectrum, wavenumbers
from hpc_seaice.data.synth.seasons import (
    YEAR_DAYS,
    day_of_year,
    extent_climatology,
    miz_width_km,
    smoothstep,
    summer_weight,
    thickness_cycle,
    winter_weight,
)

DAY_S = 86400.0
LKF_CROSSING_DEG = 40.0  # angle between the two LKF families
WIND_SPEED = 0.06  # rms of the synoptic drift, m/s
NO_ICE_SIC = 1e-3  # concentration at or below which a cell is open water (no stored drift)
EDGE_NOISE_KM = 120.0  # rms shift of the ice edge by the random anomaly
# Deformation: rms grid-scale total deformation of the multifractal drift at 12 km cells
# (1/day; coarser cells see less, ~ L^-0.25 as beta(2) = 0.5), the cascade's intermittency,
# the LKF slip (m/s) with the exponent of its power-law spread and the roughness of the
# field that sets it; summer: stronger, less intermittent.
DEFORMATION_RMS_12KM = 0.045
INTERMITTENCY = 0.5
FAULT_SLIP = 0.005
FAULT_SLIP_TAIL = 2.75  # Pareto exponent of the slips (capped at 40 x)
GATE_SLOPE = 2.0  # spectral slope of the gate field: rough, so slips vary along a fault
SUMMER_DEFORMATION_GAIN = 0.8  # erms x (1 + this) in full summer
SUMMER_INTERMITTENCY_CUT = 0.4  # intermittency x (1 - this) in full summer
DAMAGE_FULL_PER_DAY = 0.15  # deformation that renews damage to 1 (an LKF core)
LEAD_ONSET_PER_DAY = 0.02  # divergence above which a lead opens
LEAD_SCALE_PER_DAY = 0.08  # ... and the e-folding of its opening beyond that


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
            unit_spectrum(power_law(k, GATE_SLOPE, 3.0), kx, grid),  # 4 LKF activity gate and slip
            # 5 synoptic stream function: smooth (power ~ k^-7), the large-scale strain of the drift
            unit_spectrum(power_law(k, 7.0, 1.5), kx, grid),
            unit_spectrum(cascade_spectrum(grid, rot, LKF_CROSSING_DEG), kx, grid),  # 6 the cascade's log-field
        ]
        lkf_tau = np.full_like(k, 60.0)  # the LKF network persists: its contours must not jitter
        taus = [tau(10.0), tau(30.0), lkf_tau, lkf_tau, np.full_like(k, 10.0), tau(6.0), tau(10.0)]
        self.fields = SpectralAR1(self.rng, grid, dt_days, spectra=spectra, taus=taus)
        # LKF lines run perpendicular to their families' wave vectors
        self.fault_angles = [rot + 90.0, rot + LKF_CROSSING_DEG + 90.0]
        # The multifractal drift's white noise has its own stream (advanced once per state).
        noise_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
        self.drift = MultifractalDrift(grid, dt_days, g.grid.cell_m, noise_rng)
        self.deformation_rms = DEFORMATION_RMS_12KM * (self.cell_km / 12.0) ** -0.25
        # rms |grad psi| per cell of the unit stream function, to scale the wind drift to m/s.
        w = np.where((kx == 0) | (kx == grid // 2), 1.0, 2.0)
        grad_rms = math.sqrt(float((w * spectra[5] ** 2 * k**2).sum())) * 2.0 * math.pi / grid
        # m/s per unit gradient, slowed near the coasts like the mean drift
        self.coast_slow = 1.0 - np.exp(-np.maximum(g.coast_km, 0.0) / 120.0)
        self.wind_coast = WIND_SPEED / max(grad_rms, 1e-12) * self.coast_slow
        self.interannual = 0.0
        self.damage: np.ndarray | None = None  # the memory field
        self.tau_damage = 10.0 + 20.0 * g.multiyear  # relaxation time, days
        ocean = g.ocean
        self.ocean_area_km2 = g.area[ocean] / 1e6
        self.damage_decay = np.exp(-dt_days / self.tau_damage).astype(np.float32)
        # float32 copies of what every state reads (float64 transcendentals are several times slower)
        f32 = np.float32
        self.c32 = {
            name: getattr(g, name).astype(f32)
            for name in ("coldness", "thickness", "coast_km", "fast_width_km", "u_mean", "v_mean", "dx", "dy")
        }
        self.c32["coast_slow"] = self.coast_slow.astype(f32)
        self.c32["wind_coast"] = self.wind_coast.astype(f32)

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
            out[t] = self._one_state(f[t], float(targets[t]), float(doys[t]))
        return out

    def _one_state(self, f: np.ndarray, extent: float, doy: float) -> np.ndarray:
        g, c = self.geometry, self.c32
        edge_anom, thick_anom, f1, f2, gate, psi, omega = f
        summer = float(summer_weight(doy))
        winter = float(winter_weight(doy))

        # Ice edge: the ramp from 0.15 at the edge reaches the pack at miz_km inside (C1-smooth,
        # exactly 1 there), a fringe of low concentration fades out over a cell or two outside.
        potential = c["coldness"] + np.float32(EDGE_NOISE_KM) * edge_anom
        margin = potential - np.float32(self._threshold(potential, extent))  # km inside the ice edge
        miz_km = max(float(miz_width_km(doy)), 3.0 * self.cell_km)
        ramp = 1.0 - (1.0 - np.clip(margin * np.float32(1.0 / miz_km), 0.0, 1.0)) ** 3
        fringe_km = np.float32(1.5 * self.cell_km)
        ice = g.ocean & (margin > -fringe_km)
        fast = ice & (ramp >= 1.0) & (c["coast_km"] < np.float32(winter) * c["fast_width_km"])
        moving = ice & ~fast

        # Drift: climatology + smooth synoptic wind + multifractal part + LKF slips.
        gain = 1.0 + SUMMER_DEFORMATION_GAIN * summer
        a = INTERMITTENCY * (1.0 - SUMMER_INTERMITTENCY_CUT * summer)
        u_m, v_m = self.drift.velocity(omega, a, self.deformation_rms * gain)
        u_f, v_f = fault_slip([f1, f2], self.fault_angles, gate, FAULT_SLIP * gain, FAULT_SLIP_TAIL)
        psi_y, psi_x = np.gradient(psi)
        zero = np.float32(0.0)
        u = np.where(moving, c["u_mean"] + c["wind_coast"] * psi_y + c["coast_slow"] * (u_m + u_f), zero)
        v = np.where(moving, c["v_mean"] - c["wind_coast"] * psi_x + c["coast_slow"] * (v_m + v_f), zero)

        # Leads open where the ice diverges, ridges build where it converges (centred
        # differences with the true cell sizes, as in hpc_seaice.data.geo.deformation).
        uy, ux = np.gradient(u)
        vy, vx = np.gradient(v)
        ux, vx = ux * (np.float32(DAY_S) / c["dx"]), vx * (np.float32(DAY_S) / c["dx"])
        uy, vy = uy * (np.float32(DAY_S) / c["dy"]), vy * (np.float32(DAY_S) / c["dy"])
        div = ux + vy
        eps = np.sqrt(div * div + (ux - vy) ** 2 + (uy + vx) ** 2)  # total deformation, 1/day
        onset, scale = np.float32(LEAD_ONSET_PER_DAY), np.float32(1.0 / LEAD_SCALE_PER_DAY)
        lead = np.where(moving, 1.0 - np.exp(-np.maximum(div - onset, zero) * scale), zero)
        ridge = np.where(moving, 1.0 - np.exp(-np.maximum(-div - onset, zero) * scale), zero)
        # Pack concentration: 1 in winter; in summer 0.8-1 from a random field (no floor).
        loose = 0.2 / (1.0 + np.exp(2.0 * thick_anom - 0.5))
        pack_sic = 1.0 - np.float32(summer) * loose - 0.35 * lead
        outside = 0.15 * np.clip(1.0 + margin / fringe_km, 0.0, 1.0)
        sic = np.where(margin >= 0.0, 0.15 + (pack_sic - 0.15) * ramp, outside)
        sic = np.where(ice, np.clip(sic, 0.0, 1.0), zero)

        age = smoothstep(margin, 0.0, 900.0).astype(np.float32)  # young ice near the edge, old far inside
        floe = c["thickness"] * np.float32(thickness_cycle(doy)) * (0.3 + 0.7 * age)
        floe = floe * np.exp(0.15 * thick_anom) * (1.0 - 0.6 * lead) * (1.0 + 0.5 * ridge)
        sit = sic * np.maximum(floe, 0.05)

        # Damage memory: carried with the ice, relaxing, renewed where the ice deforms.
        fresh = np.where(moving, damage_renewal(eps, DAMAGE_FULL_PER_DAY), zero)
        if self.damage is None:
            self.damage = fresh
        else:
            moved = advect(self.damage, u, v, self.dt_days * DAY_S, g.dx, g.dy).astype(np.float32)
            self.damage = np.maximum(moved * self.damage_decay, fresh)
        self.damage = np.where(ice, self.damage, zero)
        background = np.clip(0.05 + 0.5 * (1.0 - sic) + np.float32(0.2 * summer), 0.0, 1.0)
        damage = np.where(ice, 1.0 - (1.0 - self.damage) * (1.0 - background), zero)
        # The fringe's last cells (sic <= 1e-3) count as open water: no drift is stored there, as a
        # model writes no velocity without ice (the evaluation's consistency check uses the same bound).
        drifting = sic > np.float32(NO_ICE_SIC)
        u, v = np.where(drifting, u, zero), np.where(drifting, v, zero)
        return np.stack([sit, sic, damage, u, v]).astype(np.float32, copy=False) * self.ocean_f32
