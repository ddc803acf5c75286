"""The notebook API: ``hs.open_dataset`` is lazy and agrees with the shards."""

import numpy as np
import pytest
import xarray as xr

import hpc_seaice as hs
from hpc_seaice.data.dataset import ShardedDataset
from hpc_seaice.errors import UserError


def test_open_dataset_is_lazy_and_matches_the_shards(tiny_dataset):
    ds = hs.open_dataset(tiny_dataset, split="test")
    assert isinstance(ds, xr.Dataset)
    assert ds["sit"].chunks is not None  # dask-backed: nothing read yet
    reference = ShardedDataset(tiny_dataset, split="test", normalize=False)
    assert ds.sizes["time"] == len(reference) and list(ds.data_vars)[:5] == ["sit", "sic", "damage", "siu", "siv"]
    np.testing.assert_array_equal(ds["time"].values.astype("datetime64[s]"), reference.times)
    for i in range(len(reference)):
        expected = reference[i].numpy()
        got = np.stack([ds[name].isel(time=i).values for name in ("sit", "sic", "damage", "siu", "siv")])
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(ds["mask"].values, reference.static.mask)
    assert ds["sit"].attrs["units"] == "m" and ds["lat"].dims == ("y", "x")
    ds.close()


def test_open_dataset_whole_set_and_unknown_split(tiny_dataset):
    with hs.open_dataset(tiny_dataset) as ds:
        assert ds.sizes["time"] == len(ShardedDataset(tiny_dataset, split=None, normalize=False))
        assert bool((ds["time"].diff("time") > np.timedelta64(0)).all())
    with pytest.raises(UserError, match="no split 'spring'"):
        hs.open_dataset(tiny_dataset, split="spring")
