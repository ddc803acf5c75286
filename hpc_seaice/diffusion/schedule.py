"""Training noise schedules: densities over the log-SNR gamma, sampled by inverse CDF.

A schedule is a probability density p(gamma) on [gamma_min, gamma_max]. Training draws
u in [0, 1) (stratified over the global batch, :func:`stratified_uniform`), maps it through the
inverse CDF to gamma, and weights the loss by 1 / p(gamma) (importance weighting), so the
expected loss does not depend on the schedule, only its variance does.

- :class:`CosineSchedule`: the fixed cosine schedule gamma(t) = -2 log tan(pi t / 2), truncated.
- :class:`AdaptiveSchedule`: Kingma & Gao (2023) "Understanding diffusion objectives": a
  piecewise-constant density on ``num_bins`` equal bins whose heights track an EMA of the
  per-bin weighted loss. The density then matches where the weighted loss is, which minimises the
  variance of the importance-weighted estimate. Its bin heights are state (``state_dict``) and are
  saved in checkpoints so a resumed run draws the same gammas.

All bookkeeping is in float64 on the CPU (a hundred numbers); ``gamma`` and ``density`` return
tensors on the device and in the dtype of their input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from hpc_seaice.config import DiffusionConfig


def stratified_uniform(step_seed: int, positions: Tensor | Sequence[int], batch: int) -> Tensor:
    """Low-discrepancy u in [0, 1) for the samples of one global batch (float64, CPU).

    u_i = (shift + i / batch) mod 1 with one random shift per global batch drawn from
    ``step_seed``, and i = position mod batch the sample's slot in the global batch (positions
    may be global stream positions). Each rank passes its own samples' positions and gets its
    slice of the same global set, whatever the number of ranks.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    gen = torch.Generator().manual_seed(int(step_seed))
    shift = torch.rand((), generator=gen, dtype=torch.float64)
    slot = torch.as_tensor(positions, dtype=torch.int64).remainder(batch).double()
    return (shift + slot / batch).remainder(1.0)


class CosineSchedule:
    """p(gamma) proportional to 1 / cosh(gamma / 2) on [gamma_min, gamma_max] (fixed)."""

    def __init__(self, gamma_min: float, gamma_max: float) -> None:
        if not gamma_max > gamma_min:
            raise ValueError(f"gamma_max ({gamma_max}) must exceed gamma_min ({gamma_min})")
        self.gamma_min = float(gamma_min)
        self.gamma_max = float(gamma_max)
        # t(gamma) = (2 / pi) atan(exp(-gamma / 2)) decreases with gamma.
        self._t_low = 2.0 / math.pi * math.atan(math.exp(-self.gamma_max / 2))
        self._t_high = 2.0 / math.pi * math.atan(math.exp(-self.gamma_min / 2))

    def gamma(self, u: Tensor) -> Tensor:
        """Inverse CDF: u in [0, 1) -> gamma, increasing (u = 0 gives gamma_min)."""
        t = self._t_high - u.double().clamp(0.0, 1.0) * (self._t_high - self._t_low)
        g = -2.0 * torch.log(torch.tan(0.5 * math.pi * t))
        return g.clamp(self.gamma_min, self.gamma_max).to(u.dtype)

    def density(self, gamma: Tensor) -> Tensor:
        g = gamma.double()
        p = 1.0 / (2.0 * math.pi * torch.cosh(0.5 * g)) / (self._t_high - self._t_low)
        inside = (g >= self.gamma_min) & (g <= self.gamma_max)
        return torch.where(inside, p, torch.zeros_like(p)).to(gamma.dtype)

    def update(self, gamma: Tensor, weighted_loss: Tensor) -> None:
        """Fixed schedule: nothing to learn."""

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "cosine", "gamma_min": self.gamma_min, "gamma_max": self.gamma_max}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_state(self, state, "cosine")


class AdaptiveSchedule:
    """Binned density on [gamma_min, gamma_max] learned from the weighted loss (Kingma & Gao 2023).

    Bin heights w_k start equal (uniform density) and follow w_k <- decay w_k + (1 - decay) m_k
    for every bin that received samples in a batch, m_k the batch mean of the weighted loss in
    that bin. The density mixes in ``uniform_mix`` of the uniform density, so it stays strictly
    positive: every gamma keeps being visited and the importance weight 1 / p is bounded.
    """

    def __init__(
        self,
        gamma_min: float,
        gamma_max: float,
        num_bins: int = 100,
        decay: float = 0.999,
        uniform_mix: float = 0.01,
    ) -> None:
        if not gamma_max > gamma_min:
            raise ValueError(f"gamma_max ({gamma_max}) must exceed gamma_min ({gamma_min})")
        if num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if not 0.0 < uniform_mix <= 1.0:
            raise ValueError(f"uniform_mix must be in (0, 1], got {uniform_mix}")
        self.gamma_min = float(gamma_min)
        self.gamma_max = float(gamma_max)
        self.num_bins = int(num_bins)
        self.decay = float(decay)
        self.uniform_mix = float(uniform_mix)
        self.width = (self.gamma_max - self.gamma_min) / self.num_bins
        self.weights = torch.ones(self.num_bins, dtype=torch.float64)

    def probabilities(self) -> Tensor:
        """Probability mass of each bin (float64, sums to 1, every entry > 0)."""
        p = self.weights / self.weights.sum()
        return (1.0 - self.uniform_mix) * p + self.uniform_mix / self.num_bins

    def bin_index(self, gamma: Tensor) -> Tensor:
        k = torch.floor((gamma.double().cpu() - self.gamma_min) / self.width).long()
        return k.clamp(0, self.num_bins - 1)

    def gamma(self, u: Tensor) -> Tensor:
        """Inverse CDF of the piecewise-constant density (piecewise linear in u, increasing)."""
        probs = self.probabilities()
        cdf = torch.cumsum(probs, 0)
        uu = u.detach().double().cpu().clamp(0.0, 1.0)
        k = torch.searchsorted(cdf, uu, right=True).clamp(max=self.num_bins - 1)
        start = cdf[k] - probs[k]
        frac = ((uu - start) / probs[k]).clamp(0.0, 1.0)
        g = self.gamma_min + (k.double() + frac) * self.width
        return g.clamp(self.gamma_min, self.gamma_max).to(device=u.device, dtype=u.dtype)

    def density(self, gamma: Tensor) -> Tensor:
        g = gamma.detach().double().cpu()
        p = self.probabilities()[self.bin_index(g)] / self.width
        inside = (g >= self.gamma_min) & (g <= self.gamma_max)
        p = torch.where(inside, p, torch.zeros_like(p))
        return p.to(device=gamma.device, dtype=gamma.dtype)

    def update(self, gamma: Tensor, weighted_loss: Tensor) -> None:
        """EMA of the per-bin batch mean of ``weighted_loss`` (independent of sample order).

        In data-parallel training pass the gathered global batch, so every rank keeps the same
        density. Non-finite losses are ignored.
        """
        g = gamma.detach().double().cpu().flatten()
        loss = weighted_loss.detach().double().cpu().flatten()
        if g.shape != loss.shape:
            raise ValueError(f"gamma {tuple(g.shape)} and weighted_loss {tuple(loss.shape)} differ")
        ok = torch.isfinite(g) & torch.isfinite(loss)
        g, loss = g[ok], loss[ok].clamp_min(0.0)
        if g.numel() == 0:
            return
        k = self.bin_index(g)
        sums = torch.zeros(self.num_bins, dtype=torch.float64).index_add_(0, k, loss)
        counts = torch.bincount(k, minlength=self.num_bins)
        seen = counts > 0
        batch_mean = sums[seen] / counts[seen]
        self.weights[seen] = self.decay * self.weights[seen] + (1.0 - self.decay) * batch_mean
        # A long run of zero losses could otherwise empty the density; keep it well defined.
        if not float(self.weights.sum()) > 0.0:
            self.weights.fill_(1.0)

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "adaptive",
            "gamma_min": self.gamma_min,
            "gamma_max": self.gamma_max,
            "num_bins": self.num_bins,
            "weights": self.weights.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_state(self, state, "adaptive")
        if int(state["num_bins"]) != self.num_bins:
            raise ValueError(f"adaptive schedule has {self.num_bins} bins, checkpoint has {state['num_bins']}")
        weights = torch.as_tensor(state["weights"], dtype=torch.float64).cpu()
        if weights.shape != (self.num_bins,) or not bool(torch.isfinite(weights).all()):
            raise ValueError("adaptive schedule state has malformed weights")
        self.weights = weights.clone()


def _check_state(schedule: CosineSchedule | AdaptiveSchedule, state: dict[str, Any], kind: str) -> None:
    if state.get("kind") != kind:
        raise ValueError(f"noise-schedule state of kind {state.get('kind')!r} cannot load into {kind!r}")
    saved = (float(state["gamma_min"]), float(state["gamma_max"]))
    if saved != (schedule.gamma_min, schedule.gamma_max):
        raise ValueError(
            f"noise-schedule range {saved} in the state differs from the configured "
            f"({schedule.gamma_min}, {schedule.gamma_max})"
        )


Schedule = CosineSchedule | AdaptiveSchedule


def build_schedule(cfg: DiffusionConfig) -> Schedule:
    """The training schedule named by ``diffusion.schedule``."""
    if cfg.schedule == "cosine":
        return CosineSchedule(cfg.gamma_min, cfg.gamma_max)
    if cfg.schedule == "adaptive":
        return AdaptiveSchedule(cfg.gamma_min, cfg.gamma_max, cfg.adaptive_bins, cfg.adaptive_decay)
    raise ValueError(f"diffusion.schedule {cfg.schedule!r} is not one of ('adaptive', 'cosine')")
