"""What a forecast is scored against: the data set's states at its valid times, and the two baselines.

The truth is the data set itself (any split) at each valid time of the forecast file; every
valid time, and the reference time, must be a time of the data set, exactly (one line naming the
file and the first time that is not). The grid must be the data set's, checked as for a samples
file (:func:`.generated.check_same_grid`: size, ocean mask, cell centres within 100 m).

Baselines (scored by the same code as the forecast, as one-member ensembles):

- **persistence**: the data set's state at ``forecast_reference_time`` (the initial state),
  held for every lead;
- **day-of-year climatology** of the training split: per valid time, the per-cell mean of every
  training state whose calendar day of year (1-366) lies within ``window`` days of the valid
  time's (counted around the year end on a 365-day year, so 31 Dec and 1 Jan are one day apart;
  in leap years this blurs the window by one day); every time of day counts. The default window
  of 15 days (a 31-day window) follows the usual smoothing of a daily climatology: with one
  state a day and 8 training years it averages about 250 states per valid time.

The climatology is built in one pass over the training split: each training state whose day
of year falls in some valid time's window is read once and added, at its ocean cells, to the
sum of its day of year (memory: the number of distinct days of year needed x C x ocean cells x 8
bytes; 90 days x 5 x 131,000 cells is 470 MB at 512 x 512).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hpc_seaice.data.format.manifest import in_split, to_iso
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.errors import UserError

TRAIN_SPLIT = "train"
DEFAULT_WINDOW_DAYS = 15
YEAR_DAYS = 365


def time_indices(times: np.ndarray, truth: ShardedDataset, path: Path, data: str, what: str) -> np.ndarray:
    """Indices into ``truth`` of ``times`` (each must be a time of the data set, exactly)."""
    have = np.asarray(truth.times, dtype="datetime64[s]")
    want = np.asarray(times).astype("datetime64[s]").reshape(-1)
    idx = np.searchsorted(have, want).clip(0, max(len(have) - 1, 0))
    found = have[idx] == want
    if not found.all():
        k = int(np.argmin(found))
        raise UserError(
            f"forecast file {path}: {what} {to_iso(want[k])} is not a time of the data set {data} "
            f"(it holds {len(have)} states from {to_iso(have[0])} to {to_iso(have[-1])})"
        )
    return idx


def in_training_split(times: np.ndarray, truth: ShardedDataset) -> int:
    """How many of ``times`` lie inside the training split (their truth is then in the climatology)."""
    span = truth.manifest.splits.get(TRAIN_SPLIT)
    if span is None:
        return 0
    return int(in_split(np.asarray(times).astype("datetime64[s]"), span).sum())


def day_of_year(times: np.ndarray) -> np.ndarray:
    """Calendar day of year, 1-366."""
    t = np.asarray(times).astype("datetime64[D]")
    return (t - t.astype("datetime64[Y]")).astype(np.int64) + 1


def day_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Days between days of year ``a`` and ``b``, around the year end on a 365-day year."""
    d = np.abs(np.asarray(a) - np.asarray(b)) % YEAR_DAYS
    return np.minimum(d, YEAR_DAYS - d)


class DayOfYearClimatology:
    """Per valid time, the mean of the training states within ``window`` days of year (module docstring)."""

    def __init__(
        self,
        train: ShardedDataset,
        valid_times: np.ndarray,
        window: int,
        data: str,
        progress: bool = False,
    ) -> None:
        self.window = int(window)
        self.data = data
        self.mask = train.static.mask > 0.5
        self.grid = train.grid
        self.valid_doy = day_of_year(valid_times)
        all_days = np.arange(1, 367)
        wanted = (day_distance(all_days[:, None], self.valid_doy[None, :]) <= self.window).any(axis=1)
        self.days = all_days[wanted]  # the days of year whose states are needed, sorted
        slot = np.full(367, -1, dtype=np.int64)
        slot[self.days] = np.arange(self.days.size)
        channels, cells = train.num_channels, int(self.mask.sum())
        self.sums = np.zeros((self.days.size, channels, cells), dtype=np.float64)
        self.counts = np.zeros(self.days.size, dtype=np.int64)
        train_slot = slot[day_of_year(train.times)]
        for i in tqdm(np.flatnonzero(train_slot >= 0), desc="climatology", unit="state", disable=not progress):
            state = train.raw(int(i))[:, self.mask]
            self.sums[train_slot[i]] += state
            self.counts[train_slot[i]] += 1

    def states(self, k: int) -> int:
        """How many training states the climatology of valid time ``k`` averages."""
        return int(self.counts[self._window(k)].sum())

    def _window(self, k: int) -> np.ndarray:
        return day_distance(self.days, self.valid_doy[k]) <= self.window

    def mean(self, k: int) -> np.ndarray:
        """``[C, H, W]`` float32: the climatology of valid time ``k`` (land 0)."""
        inside = self._window(k)
        n = int(self.counts[inside].sum())
        if n == 0:
            raise UserError(
                f"{self.data}: the training split has no state within {self.window} days of day of year "
                f"{self.valid_doy[k]}; "
                "give a wider --climatology-window"
            )
        out = np.zeros((self.sums.shape[1], *self.grid), dtype=np.float32)
        out[:, self.mask] = self.sums[inside].sum(axis=0) / n
        return out


def warn_training_overlap(count: int, total: int, data: str) -> None:
    """A forecast scored on training times: its truth is in the climatology it is compared with."""
    if count:
        print(
            f"evaluate: warning: {count} of the forecast's {total} valid times lie in the training split of {data}; "
            "the climatology baseline then includes the truth itself",
            file=sys.stderr,
            flush=True,
        )
