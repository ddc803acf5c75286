"""Memorisation: are a model's samples closer to training states than unseen states ever are?

Why: a model that returns training states, exact or blurred, scores well on everything else
(its states are real, so spectra, aggregates and consistency are right). The test: each
sample's distance to its nearest training state, against the test states' distances to
theirs. Unseen states of the same system are as close to the training set as a good model's
samples should be; a model much closer than that copies.

Distance: RMS over ocean cells and the five variables of the difference of the fields
normalised by the training statistics (``(x - mean) / std`` per variable), in std units, taken
in a projection: the block means over ``b x b`` cells, ``b = ceil(min(H, W) / 64)`` (a 64 x 64
coarse grid; b = 8 on the 512 x 512 grid, 1 on 64 x 64), each block weighted by its ocean-cell
count n_k. The block mean is the orthogonal projection onto fields constant in each block (in
the inner product of the ocean cells), so with P ocean cells and C variables

    RMS_full^2 = (1 / CP) sum_c sum_k n_k (mean_k x - mean_k y)^2 + within-block residual
               = RMS_projection^2 + RMS_within^2 :

the projected distance is a lower bound of the full-resolution RMS, equal to it when the two
states differ by a field constant in every block. It keeps the large-scale state (ice edge,
thickness distribution, drift pattern) where the difference between two real states lives,
and drops the finest scales, where a blur changes a copy most.

Cost: a pass over the training split reads every state once (``ShardedDataset`` batches of
about :data:`READ_BLOCK_BYTES`), projects it, and compares it to all queries with one matrix
product; the nearest candidate of each block is re-measured exactly in float64 where it may
beat the best so far. The distances are exact; the index can differ from the exact nearest only
between references equally near within float32 rounding. Memory is one block plus
``(Q + B) x C x K`` floats.

Threshold and flag: ``threshold`` = the smallest nearest-train distance of any test state. A
sample below it is closer to a training state than any unseen state came. If samples and test
states were exchangeable (a good model), the share of samples below the minimum of T test
distances would be 1 / (T + 1) in expectation: the count of N samples below is beta-binomial
(N, 1, T). ``copies_training`` is true when more than 5 % of the samples fall below the
threshold *and* that count is improbable for an exchangeable model (``p_value < 0.05``); the
second condition matters only with few test states (with T = 5 an exchangeable model puts 17 %
below). Why not a percentile (e.g. the 5th) of the test distances: a perfect model would put
5 % of its samples below the 5th percentile, and the flag would fire on it half of the time.
Caveat: consecutive test states are correlated, so the effective T is smaller than the count
and the p-value is optimistic; the 5 % share is the main criterion.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.stats import betabinom

from hpc_seaice.data.blocks import iter_blocks
from hpc_seaice.data.loading.dataset import ShardedDataset

COARSE_SIDE = 64  # blocks per side of the projection (about)
READ_BLOCK_BYTES = 256 << 20
APPROX_SLACK = 1e-3  # relative to |q|^2 + |r|^2: above the worst float32 rounding of the product
EXACT_ROWS = 256  # queries re-measured in float64 at a time (bounded temporaries)
SHARE_LIMIT = 0.05
SIGNIFICANCE = 0.05
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def block_size(grid: tuple[int, int], coarse_side: int = COARSE_SIDE) -> int:
    """The block rule: ``ceil(min(H, W) / coarse_side)`` cells per block side."""
    return max(1, math.ceil(min(grid) / coarse_side))


class Projection:
    """Weighted block means of normalised ocean fields: Euclidean distance = projected RMS.

    ``mean``, ``std``: the per-variable training statistics (``static.h5``). Every block with
    at least one ocean cell is kept (the Pythagorean bound above needs all ocean cells).
    """

    def __init__(self, mask: np.ndarray, mean: np.ndarray, std: np.ndarray, block: int | None = None) -> None:
        self.ocean = np.asarray(mask) > 0.5
        h, w = self.ocean.shape
        self.block = b = block or block_size((h, w))
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.num_variables = int(self.mean.size)
        self._shape = (math.ceil(h / b), math.ceil(w / b))
        padded = np.zeros((self._shape[0] * b, self._shape[1] * b))
        padded[:h, :w] = self.ocean
        counts = padded.reshape(self._shape[0], b, self._shape[1], b).sum(axis=(1, 3)).reshape(-1)
        self.kept = np.nonzero(counts > 0)[0]
        self.counts = counts[self.kept]
        total = self.num_variables * float(self.ocean.sum())
        if total == 0:
            raise ValueError("the mask has no ocean cell")
        # block sum -> weighted block mean: sum / n_k * sqrt(n_k / (C P)) = sum / sqrt(n_k C P)
        self._sum_scale = 1.0 / np.sqrt(self.counts * total)
        rows, cols = np.nonzero(self.ocean)
        block_of_cell = np.searchsorted(self.kept, (rows // b) * self._shape[1] + cols // b)
        self._ocean_sums = sparse.csr_matrix(
            (np.ones(rows.size), (np.arange(rows.size), block_of_cell)), shape=(rows.size, self.kept.size)
        )

    @property
    def dim(self) -> int:
        return self.num_variables * int(self.kept.size)

    def normalised_fields(self, x: np.ndarray) -> np.ndarray:
        """``[n, D]`` float32 from fields already normalised, land 0 (``ShardedDataset`` reads) ``[n, C, H, W]``."""
        x = np.asarray(x, dtype=np.float32)
        n, c, h, w = x.shape
        b, (bh, bw) = self.block, self._shape
        if (bh * b, bw * b) != (h, w):
            x = np.pad(x, ((0, 0), (0, 0), (0, bh * b - h), (0, bw * b - w)))
        # Rows of blocks first, then columns: two passes over contiguous memory (4x faster than
        # one sum over both block axes at 512 x 512; float32 sums of b values, exact to ~1e-7).
        rows = x.reshape(n * c * bh, b, bw * b).sum(axis=1)
        sums = rows.reshape(n * c * bh, bw, b).sum(axis=2).reshape(n, c, bh * bw).astype(np.float64)
        return (sums[:, :, self.kept] * self._sum_scale).reshape(n, -1).astype(np.float32)

    def fields(self, x: np.ndarray) -> np.ndarray:
        """``[n, D]`` from physical fields ``[n, C, H, W]`` (land ignored)."""
        x = np.asarray(x, dtype=np.float64)
        z = (x - self.mean[:, None, None]) / self.std[:, None, None]
        return self.normalised_fields(np.where(self.ocean, z, 0.0))

    def ocean_values(self, x: np.ndarray) -> np.ndarray:
        """``[n, D]`` from physical values on the ocean cells ``[n, C, P]`` (the evaluation's layout)."""
        x = np.asarray(x, dtype=np.float64)
        z = (x - self.mean[:, None]) / self.std[:, None]
        n, c, p = z.shape
        sums = np.asarray(z.reshape(n * c, p) @ self._ocean_sums).reshape(n, c, -1)
        return (sums * self._sum_scale).reshape(n, -1).astype(np.float32)


@dataclass
class Neighbours:
    """Nearest reference of every query: its distance (projected RMS, std units) and index."""

    distance: np.ndarray  # [Q]
    index: np.ndarray  # [Q], into the reference set (the split's time order)
    num_references: int
    seconds: float


class NearestSearch:
    """Running nearest neighbours of fixed queries ``[Q, D]`` over reference blocks ``[B, D]``."""

    def __init__(self, queries: np.ndarray) -> None:
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self._q64 = self.queries.astype(np.float64)
        self._qnorm = (self._q64**2).sum(axis=1)
        self.best = np.full(len(self.queries), np.inf)  # squared distances
        self.index = np.full(len(self.queries), -1, dtype=np.int64)
        self.seen = 0

    def add(self, refs: np.ndarray) -> None:
        refs = np.asarray(refs, dtype=np.float32)
        if len(refs) == 0:
            return
        rnorm = (refs.astype(np.float64) ** 2).sum(axis=1)
        # |q - r|^2 = |q|^2 + |r|^2 - 2 q.r (float32 product: it only picks the candidate)
        approx = self._qnorm[:, None] + rnorm[None, :] - 2.0 * (self.queries @ refs.T)
        cand = np.argmin(approx, axis=1)
        rows = np.arange(len(cand))
        # Re-measure exactly only where the candidate may beat the best so far (the float32
        # product errs by far less than the slack); most queries stop improving after a few blocks.
        slack = APPROX_SLACK * (self._qnorm + rnorm[cand])
        todo = np.nonzero(approx[rows, cand] - slack < self.best)[0]
        for lo in range(0, todo.size, EXACT_ROWS):
            q = todo[lo : lo + EXACT_ROWS]
            exact = ((self._q64[q] - refs[cand[q]].astype(np.float64)) ** 2).sum(axis=1)
            better = exact < self.best[q]
            self.best[q[better]] = exact[better]
            self.index[q[better]] = cand[q[better]] + self.seen
        self.seen += len(refs)

    def result(self, seconds: float = 0.0) -> Neighbours:
        return Neighbours(np.sqrt(self.best), self.index, self.seen, seconds)


def nearest(queries: np.ndarray, references: np.ndarray, block: int = 4096) -> Neighbours:
    """Nearest reference of each query, both already projected (``[Q, D]``, ``[R, D]``)."""
    start = time.perf_counter()
    search = NearestSearch(queries)
    for lo in range(0, len(references), block):
        search.add(references[lo : lo + block])
    return search.result(time.perf_counter() - start)


def nearest_in_split(
    queries: np.ndarray,
    data: str | os.PathLike,
    projection: Projection,
    split: str = "train",
    block_bytes: int = READ_BLOCK_BYTES,
) -> Neighbours:
    """Nearest state of ``split`` for each projected query, streaming the split in blocks."""
    start = time.perf_counter()
    ds = ShardedDataset(data, split, normalize=True)
    search = NearestSearch(queries)
    sample_bytes = ds.num_channels * ds.grid[0] * ds.grid[1] * 4
    buffer = None
    for sl in iter_blocks(len(ds), sample_bytes, block_bytes):
        n = sl.stop - sl.start
        if buffer is None or len(buffer) < n:
            buffer = np.empty((n, ds.num_channels, *ds.grid), np.float32)
        batch = ds.read_batch(range(sl.start, sl.stop), buffer[:n])
        search.add(projection.normalised_fields(batch))
    ds.close()
    return search.result(time.perf_counter() - start)


def nearest_for_sets(
    sets: dict[str, np.ndarray],
    data: str | os.PathLike,
    projection: Projection,
    split: str = "train",
    block_bytes: int = READ_BLOCK_BYTES,
) -> dict[str, Neighbours]:
    """:func:`nearest_in_split` for several projected sets (models, test states) in one pass."""
    names = list(sets)
    sizes = [len(sets[k]) for k in names]
    found = nearest_in_split(np.concatenate([sets[k] for k in names]), data, projection, split, block_bytes)
    out, lo = {}, 0
    for name, n in zip(names, sizes):
        out[name] = Neighbours(
            found.distance[lo : lo + n], found.index[lo : lo + n], found.num_references, found.seconds
        )
        lo += n
    return out


def _quantiles(x: np.ndarray) -> dict[str, float]:
    values = np.quantile(x, QUANTILES)
    return {f"q{round(100 * q):02d}": float(v) for q, v in zip(QUANTILES, values)}


def below_reference_minimum(values: np.ndarray, reference: np.ndarray) -> tuple[float, int, float, float]:
    """(threshold, count, share, p-value) of ``values`` below the smallest of ``reference``.

    The p-value is P(K >= count) for K ~ BetaBinomial(N, 1, T): the count an exchangeable set of N
    values would put below the minimum of T reference values.
    """
    v, r = np.asarray(values).reshape(-1), np.asarray(reference).reshape(-1)
    threshold = float(r.min())
    count = int((v < threshold).sum())
    p_value = float(betabinom.sf(count - 1, v.size, 1, r.size)) if count > 0 else 1.0
    return threshold, count, count / v.size, p_value


def memorization_verdict(
    sample_nn: np.ndarray,
    test_nn: np.ndarray,
    share_limit: float = SHARE_LIMIT,
    significance: float = SIGNIFICANCE,
) -> dict[str, Any]:
    """The flag and its numbers for ``metrics.json`` (``models[NAME].memorization``).

    ``sample_nn`` ``[N]``: each sample's nearest-train distance; ``test_nn`` ``[T]``: each test
    state's. See the module docstring for the rule.
    """
    s = np.asarray(sample_nn, dtype=np.float64).reshape(-1)
    t = np.asarray(test_nn, dtype=np.float64).reshape(-1)
    if s.size == 0 or t.size == 0:
        raise ValueError(f"need samples and test states, got {s.size} and {t.size}")
    threshold, count, share, p_value = below_reference_minimum(s, t)
    return {
        "copies_training": bool(share > share_limit and p_value < significance),
        "share_below": share,
        "count_below": count,
        "threshold": threshold,
        "p_value": p_value,
        "expected_share_if_exchangeable": 1.0 / (t.size + 1),
        "num_samples": int(s.size),
        "num_test_states": int(t.size),
        "sample_nn_quantiles": _quantiles(s),
        "test_nn_quantiles": _quantiles(t),
        "rule": (
            f"threshold = the smallest nearest-train distance of a test state; copies when more than "
            f"{share_limit:.0%} of the samples are below it and p < {significance:g} for an exchangeable model"
        ),
        "distance": "RMS of normalised fields over ocean cells and variables, block-mean projection (std units)",
    }
