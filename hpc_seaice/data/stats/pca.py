"""Standard deviation of the leading principal component of a normalised split.

Why: the diffusion sampler starts from ``sigma_max * noise``. Along a direction whose data std is
``s``, the probability-flow ODE then returns the std ``s * sigma_max / sqrt(s^2 + sigma_max^2)``,
so a ``sigma_max`` not well above the largest data std (on the pan-Arctic grid the seasonal
mode, about 290 in normalised units) narrows the generated distribution along it. The data
set stores this std (``pc1_std`` in ``static.h5``) so that sampling can check its noise range.

The states are vectors over the ocean cells of all channels (``D`` values, over a million on a
512 x 512 grid), so the ``D x D`` covariance is never formed: the top eigenvalue of the
``n x n`` Gram matrix of ``n`` centred states is the same number. Up to ``max_states`` states,
evenly spread over the split (every season), are used; they are read one at a time.
"""

from __future__ import annotations

import os

import numpy as np

from hpc_seaice.data.blocks import evenly_spaced

DEFAULT_MAX_STATES = 64
GRAM_BLOCK = 1 << 16


def leading_pc_std_of(states: np.ndarray) -> float:
    """Std of the first principal component of ``states`` ``[n, D]`` (sample covariance, n - 1).

    Equals ``sqrt(largest eigenvalue of cov(states))`` computed via the Gram matrix.
    """
    x = np.asarray(states)
    n = x.shape[0]
    if n < 2:
        raise ValueError("the leading principal component needs at least two states")
    gram = np.zeros((n, n))
    for start in range(0, x.shape[1], GRAM_BLOCK):  # float64 in column blocks: bounded memory
        block = x[:, start : start + GRAM_BLOCK].astype(np.float64)
        block -= block.mean(axis=0, keepdims=True)
        gram += block @ block.T
    top = float(np.linalg.eigvalsh(gram)[-1])
    return float(np.sqrt(max(top, 0.0) / (n - 1)))


def leading_pc_std(
    path: str | os.PathLike,
    split: str,
    mean: np.ndarray,
    std: np.ndarray,
    max_states: int = DEFAULT_MAX_STATES,
) -> float:
    """Leading-PC std of the ``split`` of the data set at ``path``, normalised with ``mean``/``std``.

    Normalisation as in training: ``(x - mean) / std`` per channel over the ocean cells.
    """
    # Imported here: the data set reader pulls in torch, which ``data synth`` / ``convert``
    # (they import the statistics module) do not otherwise need at start-up.
    from hpc_seaice.data.loading.dataset import ShardedDataset

    ds = ShardedDataset(path, split, normalize=False)
    ocean = ds.static.mask > 0.5
    mean = np.asarray(mean, dtype=np.float64)[:, None]
    std = np.asarray(std, dtype=np.float64)[:, None]
    rows = []
    try:
        for i in evenly_spaced(len(ds), max_states):
            x = ds.raw(int(i))[:, ocean].astype(np.float64)
            rows.append(((x - mean) / std).astype(np.float32).ravel())
    finally:
        ds.close()
    if len(rows) < 2:
        return float("nan")
    return leading_pc_std_of(np.stack(rows))
