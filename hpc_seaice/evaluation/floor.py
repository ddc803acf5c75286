"""The floor: another year of the truth, scored as if it were a model.

Why: a score means nothing without the value a perfect generator would get with the same number
of samples. The validation split is another year drawn from the same climate as the test year;
``evaluate`` draws from it as many states as the models have samples and scores them through the
very code that scores a samples file (:func:`.generated.generated_from_fields`). Every score, every
table row and every figure has it, and every verdict is read against it (:mod:`.findings`).

The draw: ``num`` distinct states of the split, chosen with a fixed seed (:data:`FLOOR_SEED`), in
time order; all of the split when it holds fewer. When the models have different sample counts
the floor takes the largest (:func:`floor_size`), so no model has more samples than the floor it
is read against: a model with fewer samples meets a floor that is, if anything, slightly harder
to reach (its CRPS has a smaller finite-ensemble penalty), never an easier one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hpc_seaice.data.format.variables import BOUNDS, VARIABLES
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.errors import UserError
from hpc_seaice.evaluation import metrics as M
from hpc_seaice.evaluation.context import ScoringContext
from hpc_seaice.evaluation.generated import GeneratedModel, generated_from_fields

FLOOR_SPLIT = "validation"
FLOOR_SEED = 0
FLOOR_NAME = "floor (validation)"
DEFAULT_FLOOR_SIZE = 16  # when no samples file is scored (reconstructions only)


def floor_size(sample_counts: Sequence[int]) -> int:
    """States in the floor: the largest sample count of the models (16 when there is no model)."""
    return max(sample_counts) if sample_counts else DEFAULT_FLOOR_SIZE


def floor_indices(num_states: int, num: int, seed: int = FLOOR_SEED) -> np.ndarray:
    """``min(num, num_states)`` distinct indices of the split, drawn with ``seed``, sorted (time order)."""
    if num >= num_states:
        return np.arange(num_states)
    return np.sort(np.random.default_rng(seed).choice(num_states, num, replace=False))


def split_problem(data: str | Path, split: str = FLOOR_SPLIT) -> str | None:
    """Why the data set has no usable ``split`` (a sentence), or None when it has states in it."""
    try:
        ds = ShardedDataset(str(data), split, normalize=False)
    except UserError as exc:
        return str(exc)
    try:
        return None if len(ds) else f"{data}: split {split!r} holds no state"
    finally:
        ds.close()


def load_floor(data: str | Path, num: int, ctx: ScoringContext, split: str = FLOOR_SPLIT) -> GeneratedModel:
    """``num`` states of ``split`` (fixed seed) as an ensemble, scored like a samples file."""
    ds = ShardedDataset(str(data), split, normalize=False)
    try:
        if len(ds) == 0:
            raise UserError(f"{data}: split {split!r} holds no state; the floor needs it")
        indices = floor_indices(len(ds), num)
        fields = np.stack([np.asarray(ds.raw(int(i)), dtype=np.float32) for i in indices])
        times = np.asarray(ds.times)[indices]
    finally:
        ds.close()
    fields = np.where(ctx.ocean, fields, np.float32(0.0))  # land carries no information (and may be NaN)
    attrs = {
        "split": split,
        "seed": FLOOR_SEED,
        "first_time": str(np.datetime_as_string(times[0], unit="h")),
        "last_time": str(np.datetime_as_string(times[-1], unit="h")),
    }
    # Real states are inside the physical bounds by construction of the data set: the shares are
    # measured all the same, as for any model.
    lower = [BOUNDS[v][0] for v in VARIABLES]
    upper = [BOUNDS[v][1] for v in VARIABLES]
    oob = M.fraction_out_of_bounds(fields, lower, upper, ctx.mask)
    return generated_from_fields(fields, FLOOR_NAME, Path(data), attrs, ctx, oob, "stored")
