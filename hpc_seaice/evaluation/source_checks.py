"""Memorisation and joint physical consistency of every scored ensemble, in the evaluation's layout.

Adapters from what ``evaluate`` holds (each ensemble's ocean cells ``N x C x P``, the streamed
test states) to :mod:`.memorization` and :mod:`.consistency`:

- memorisation: every model's and the floor's samples and every test state are projected once
  (:class:`.memorization.Projection`, normalised by the training statistics of ``static.h5``);
  one pass over the training split finds each one's nearest training state, and
  :func:`.memorization.memorization_verdict` compares the samples' distances with the test
  states'. A smooth model fails that comparison without copying anything: a smoother field is
  closer to every state, training or not (fresh draws of a generator blurred by 0.7 cells put
  25 % of their samples below the threshold on a 48 x 48 grid). So ``copies_training`` also
  asks that the samples be close to the training set *rather than* to unseen states: the ratio
  ``rho = distance to the nearest training state / distance to the nearest test state`` must be
  below the smallest ``rho`` of the floor's validation states (held-out real states, with the
  same training and test sets) for more than 5 % of the samples, a count improbable (p < 0.05) for
  a model exchangeable with the floor (the same beta-binomial rule as for the distances). Smoothing shrinks both
  distances and leaves ``rho`` alone; a copy, exact or blurred, has a small ``rho``. The floor is
  the reference of that ratio and is never flagged by it.
- consistency: the shares of ocean cells with thickness but no concentration, concentration
  without thickness, and motion without ice, per sample (mean and 95 % interval) and for the
  test states.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from hpc_seaice.evaluation.consistency import CHECKS, consistency_scores, inconsistency_shares
from hpc_seaice.evaluation.context import CH
from hpc_seaice.evaluation.floor import split_problem
from hpc_seaice.evaluation.generated import GeneratedModel
from hpc_seaice.evaluation.memorization import (
    SHARE_LIMIT,
    SIGNIFICANCE,
    Projection,
    below_reference_minimum,
    memorization_verdict,
    nearest,
    nearest_for_sets,
)

TRAIN_SPLIT = "train"
SAME_STATE = 1e-6  # std units: a sample this close to a test state is that state (float32 rounding aside)
TEST_KEY = "\0test states"  # cannot clash with a model name


class TestProjection:
    """Collects the projected test states while they stream (``[T, D]`` floats, small)."""

    def __init__(self, mask: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        self.projection = Projection(mask, mean, std)
        self.rows: list[np.ndarray] = []
        self.shares: dict[str, list[float]] = {check: [] for check in CHECKS}

    def add(self, ocean_state: np.ndarray) -> None:
        """One test state as its ocean cells ``[C, P]``."""
        self.rows.append(self.projection.ocean_values(ocean_state[None])[0])
        for check, value in _shares(ocean_state[None]).items():
            self.shares[check].append(float(value[0]))


def _shares(ocean: np.ndarray) -> dict[str, np.ndarray]:
    return inconsistency_shares(ocean[:, CH["sit"]], ocean[:, CH["sic"]], ocean[:, CH["siu"]], ocean[:, CH["siv"]])


def memorization_entries(
    sources: Sequence[GeneratedModel], tests: TestProjection, data: str, floor: GeneratedModel | None
) -> dict[str, dict[str, Any]] | None:
    """``{source name: memorization entry}``; None (with a warning) when the data set has no training split.

    ``floor``: the source whose ``rho`` (train / test nearest distance) sets the ratio threshold;
    without a floor the flag is :func:`.memorization.memorization_verdict`'s alone.
    """
    problem = split_problem(data, TRAIN_SPLIT)
    if problem:
        print(f"evaluate: warning: no memorisation check ({problem})", file=sys.stderr, flush=True)
        return None
    projection = tests.projection
    sets = {s.name: projection.ocean_values(np.stack(s.ocean_members, axis=1)) for s in sources}
    sets[TEST_KEY] = np.stack(tests.rows)
    found = nearest_for_sets(sets, data, projection, TRAIN_SPLIT)
    test_nn = found[TEST_KEY].distance
    rho = {
        s.name: found[s.name].distance / np.maximum(nearest(sets[s.name], sets[TEST_KEY]).distance, SAME_STATE)
        for s in sources
    }
    out = {}
    for source in sources:
        entry = memorization_verdict(found[source.name].distance, test_nn)
        entry["training_states"] = int(found[source.name].num_references)
        if floor is not None:
            threshold, _, share, p_value = below_reference_minimum(rho[source.name], rho[floor.name])
            entry["train_test_ratio"] = {
                "threshold": threshold,
                "share_below": share,
                "p_value": p_value,
                "median": float(np.median(rho[source.name])),
                "floor_median": float(np.median(rho[floor.name])),
            }
            entry["copies_training_by_distance"] = entry["copies_training"]
            entry["copies_training"] = bool(entry["copies_training"] and share > SHARE_LIMIT and p_value < SIGNIFICANCE)
            entry["rule"] += (
                f"; and more than {SHARE_LIMIT:.0%} of the samples have distance-to-train / distance-to-test below "
                f"the floor's smallest, p < {SIGNIFICANCE:g} (smoothing alone does not make a copy)"
            )
        out[source.name] = entry
    return out


def consistency_entry(source: GeneratedModel, n_boot: int, seed: int) -> dict[str, Any]:
    """Mean inconsistency share per check over the samples, with its 95 % interval."""
    return consistency_scores(_shares(np.stack(source.ocean_members, axis=1)), n_boot, seed)


def reference_consistency(tests: TestProjection) -> dict[str, float]:
    """The test states' mean inconsistency share per check."""
    return {check: float(np.mean(values)) for check, values in tests.shares.items()}
