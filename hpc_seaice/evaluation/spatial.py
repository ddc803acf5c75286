"""A multivariate score that sees spatial structure: the variogram score on a coarse-grained field.

Why: the ensemble CRPS and the ice-cover calibration score each cell's own distribution, so a
per-cell shuffle of real states (right marginals, no spatial structure) passes them. The
variogram score of order p (Scheuerer & Hamill 2015, Mon. Wea. Rev. 143, 1321) compares, for
pairs of locations (i, j), the observed ``|y_i - y_j|^p`` with the forecast's expectation
``E|X_i - X_j|^p``:

    VS_p = sum_{(i, j)} w_ij (|y_i - y_j|^p - E|X_i - X_j|^p)^2

It is proper and, unlike the energy score, sensitive to the correlation structure: the energy
score is dominated by the marginal errors and is known to discriminate misspecified
correlations only weakly (Pinson & Tastu 2013; Scheuerer & Hamill 2015, Sect. 3). p = 0.5 is
the order they found to discriminate best and the least sensitive to outliers.

The field it is applied to: each variable is normalised by its training-split std (the mean
cancels in differences), then averaged over square blocks of ``b x b`` cells with
``b = ceil(min(H, W) / 32)`` (a coarse grid of about 32 x 32 blocks: b = 16, 192 km blocks, on the
512 x 512 grid; b = 2 on 64 x 64); a block enters when at least half its cells are ocean and
its value is the mean over its ocean cells. Pairs are the blocks at most :data:`PAIR_RADIUS`
block widths apart (index distance), weighted ``w = 1 / distance`` and normalised to sum to 1,
which keeps the pair count small (about 12,000 on a 32 x 32 half-ocean grid) and puts the
weight on the short lags where spatial structure is. The score is in normalised units (std^{2p},
i.e. std units at p = 0.5), per variable, and ``all`` is the mean over the variables.
Structure finer than a block is not seen here; the spectra see it.

Per state the score decomposes exactly, so the bootstrap can resample members and states from
small matrices (see :mod:`.bootstrap`): with ``D_j`` the pair differences of member j and
``d_t`` those of state t, ``S[t] = sum w d_t^2``, ``G[j, t] = sum w D_j d_t`` and
``H[j, k] = sum w D_j D_k``, the score of members J against state t is
``S[t] - 2 mean_{j in J} G[j, t] + mean_{j, k in J} H[j, k]``. The fair form averages H over
pairs j != k only: an unbiased estimate of ``(E|X_i - X_j|^p)^2``, without the finite-ensemble
penalty (like the fair CRPS).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from hpc_seaice.evaluation.bootstrap import DEFAULT_BOOT, DEFAULT_SEED, Interval, StatFn, bootstrap, pair_mean

ORDER = 0.5
COARSE_SIDE = 32  # blocks per side of the coarse grid (about)
PAIR_RADIUS = 4.0  # block widths
MIN_OCEAN_SHARE = 0.5


def block_size(grid: tuple[int, int], coarse_side: int = COARSE_SIDE) -> int:
    """The block rule: ``ceil(min(H, W) / coarse_side)`` cells per block side."""
    return max(1, math.ceil(min(grid) / coarse_side))


@dataclass
class CoarseGrid:
    """Blocks of a masked grid, the pairs of blocks the score compares, and their weights."""

    block: int
    ocean: np.ndarray  # [H, W] bool
    averaging: sparse.csr_matrix  # [P, K]: ocean values [.., P] @ averaging -> block means [.., K]
    centres: np.ndarray  # [K, 2] block row and column
    first: np.ndarray  # [M] block index of each pair's first block
    second: np.ndarray  # [M]
    weights: np.ndarray  # [M], sum 1

    @property
    def num_blocks(self) -> int:
        return int(self.centres.shape[0])

    @property
    def num_pairs(self) -> int:
        return int(self.first.size)

    def coarsen(self, ocean_values: np.ndarray) -> np.ndarray:
        """Block means ``[..., K]`` of values given on the ocean cells ``[..., P]``."""
        x = np.asarray(ocean_values, dtype=np.float64)
        lead = x.shape[:-1]
        return np.asarray(x.reshape(-1, x.shape[-1]) @ self.averaging).reshape(*lead, self.num_blocks)

    def pair_differences(self, ocean_values: np.ndarray, p: float = ORDER) -> np.ndarray:
        """``|z_i - z_j|^p`` over the pairs ``[..., M]`` of the block means z of ``ocean_values``."""
        z = self.coarsen(ocean_values)
        return np.abs(z[..., self.first] - z[..., self.second]) ** p


def coarse_grid(
    mask: np.ndarray,
    block: int | None = None,
    radius: float = PAIR_RADIUS,
    min_ocean_share: float = MIN_OCEAN_SHARE,
) -> CoarseGrid:
    """The blocks and pairs of ``mask`` (1 = ocean); ``block`` defaults to :func:`block_size`."""
    ocean = np.asarray(mask) > 0.5
    h, w = ocean.shape
    b = block or block_size((h, w))
    rows, cols = np.nonzero(ocean)  # ocean cells in the row-major order of x[..., ocean]
    nbx = math.ceil(w / b)
    raw_id = (rows // b) * nbx + cols // b
    ids = np.arange(math.ceil(h / b) * nbx)
    full = np.minimum(b, h - (ids // nbx) * b) * np.minimum(b, w - (ids % nbx) * b)  # cells per block
    count = np.bincount(raw_id, minlength=full.size)
    kept = np.nonzero(count >= min_ocean_share * full)[0]
    if kept.size < 2:
        raise ValueError(f"the mask has {kept.size} block(s) of {b} x {b} cells that are mostly ocean; need 2")
    index = np.full(full.size, -1)
    index[kept] = np.arange(kept.size)
    cell_block = index[raw_id]
    inside = cell_block >= 0
    values = 1.0 / count[raw_id[inside]]
    averaging = sparse.csr_matrix(
        (values, (np.nonzero(inside)[0], cell_block[inside])), shape=(rows.size, kept.size), dtype=np.float64
    )
    centres = np.stack([kept // nbx, kept % nbx], axis=1).astype(np.float64)
    first, second, weights = _pairs(centres, radius)
    return CoarseGrid(b, ocean, averaging, centres, first, second, weights)


def _pairs(centres: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    pairs = cKDTree(centres).query_pairs(radius, output_type="ndarray")
    if pairs.size == 0:
        raise ValueError(f"no two blocks lie within {radius} block widths of each other")
    distance = np.linalg.norm(centres[pairs[:, 0]] - centres[pairs[:, 1]], axis=1)
    weights = 1.0 / distance
    return pairs[:, 0], pairs[:, 1], weights / weights.sum()


class VariogramScore:
    """Variogram score of one ensemble against streamed reference states, per variable.

    ``ocean_members``: per variable ``[N, P]`` (ocean cells, physical units); ``scale``: the std
    per variable that normalises it (the data set's training std).
    """

    def __init__(
        self,
        ocean_members: Sequence[np.ndarray],
        grid: CoarseGrid,
        scale: Sequence[float],
        p: float = ORDER,
    ) -> None:
        if len(scale) != len(ocean_members):
            raise ValueError(f"{len(scale)} scales for {len(ocean_members)} variables")
        self.grid, self.p = grid, p
        self.scale = [float(s) for s in scale]
        w = grid.weights
        self._diffs = [grid.pair_differences(np.asarray(m) / s, p) for m, s in zip(ocean_members, self.scale)]
        self.pairs = [(d * w) @ d.T for d in self._diffs]  # per variable H [N, N]
        self.num_samples = int(self._diffs[0].shape[0])
        self._obs: list[np.ndarray] = []  # per state [C] S[t]
        self._cross: list[np.ndarray] = []  # per state [C, N] G[:, t]

    @property
    def num_variables(self) -> int:
        return len(self._diffs)

    @property
    def num_states(self) -> int:
        return len(self._obs)

    def add_state(self, obs: Sequence[np.ndarray]) -> None:
        """One reference state, per variable ``[P]`` (ocean cells, physical units)."""
        if len(obs) != self.num_variables:
            raise ValueError(f"{len(obs)} variables for an ensemble of {self.num_variables}")
        w = self.grid.weights
        d = [self.grid.pair_differences(np.asarray(o) / s, self.p) for o, s in zip(obs, self.scale)]
        self._obs.append(np.array([float((w * x) @ x) for x in d]))
        self._cross.append(np.stack([m @ (w * x) for m, x in zip(self._diffs, d)]))

    def _parts(self, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._obs:
            raise ValueError("no reference state added")
        return (
            np.array([s[c] for s in self._obs]),
            np.stack([g[c] for g in self._cross], axis=1),
            self.pairs[c],
        )

    def _variables(self, c: int | None) -> list[int]:
        return list(range(self.num_variables)) if c is None else [c]

    def per_state(self, c: int | None = None, fair: bool = False) -> np.ndarray:
        """``[T]``: the score of the whole ensemble against each state (``c = None``: mean over variables)."""
        out = np.zeros(self.num_states)
        everyone = np.ones(self.num_samples)
        for k in self._variables(c):
            s, g, h = self._parts(k)
            out += s - 2.0 * g.mean(axis=0) + pair_mean(h, everyone, fair=fair)
        return out / len(self._variables(c))

    def score(self, c: int | None = None, fair: bool = False) -> float:
        """Mean over states of the score of variable ``c`` (``None``: mean over variables)."""
        return float(self.per_state(c, fair).mean())

    def stat_fn(self, c: int | None = None, fair: bool = False) -> StatFn:
        """Replicate statistic for :func:`bootstrap` (members and states resampled; distinct pairs)."""
        parts = [self._parts(k) for k in self._variables(c)]
        n, t = self.num_samples, self.num_states

        def stat(members: np.ndarray, states: np.ndarray) -> float:
            w = np.bincount(members, minlength=n).astype(np.float64)
            v = np.bincount(states, minlength=t).astype(np.float64)
            total = 0.0
            for s, g, h in parts:
                total += (s @ v) / v.sum() - 2.0 * float(w @ g @ v) / (w.sum() * v.sum())
                total += pair_mean(h, w, fair=fair, distinct=True)
            return total / len(parts)

        return stat

    def interval(
        self, c: int | None = None, fair: bool = False, n_boot: int = DEFAULT_BOOT, seed: int = DEFAULT_SEED
    ) -> Interval:
        """95 % interval of :meth:`score`, resampling members and states."""
        return bootstrap(self.stat_fn(c, fair), self.num_samples, self.num_states, n_boot, seed)
