"""The notebook API: ``hs.open_dataset`` is lazy and agrees with the shards."""

import numpy as np
import pytest
import torch
import xarray as xr

import hpc_seaice as hs
from hpc_seaice.data.loading.dataset import ShardedDataset
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


@pytest.fixture(scope="module")
def data_space_run(tiny_dataset, tmp_path_factory):
    """A real (two-step) data-space diffusion run on the tiny data set."""
    from helpers import tiny_diffusion_config

    from hpc_seaice.config import config_from_dict
    from hpc_seaice.train.trainer import run_training

    run_dir = tmp_path_factory.mktemp("api") / "diffusion"
    assert run_training(config_from_dict(tiny_diffusion_config(tiny_dataset, run_dir, train={"max_steps": 2}))) == 0
    return run_dir


def test_open_run_samples_what_the_sample_command_writes(data_space_run, tmp_path):
    from helpers import hpc_seaice

    run = hs.open_run(data_space_run, device="cpu")
    assert run.step == 2 and "fields space" in repr(run)
    ds = run.sample(3, steps=4, seed=5, batch_size=2, progress=False)
    assert isinstance(ds, xr.Dataset) and ds.sizes["sample"] == 3
    assert ds.attrs["steps"] == 4 and ds.attrs["seed"] == 5 and ds.attrs["model"] == data_space_run.name
    out = tmp_path / "s.nc"
    hpc_seaice(
        "sample",
        "--run",
        str(data_space_run),
        "--num",
        "3",
        "--steps",
        "4",
        "--seed",
        "5",
        "--batch-size",
        "2",
        "--out",
        str(out),
    )
    with xr.open_dataset(out, engine="h5netcdf") as written:
        assert set(written.data_vars) == set(ds.data_vars)
        for name in ds.data_vars:
            np.testing.assert_allclose(ds[name].values, written[name].values, rtol=1e-5, atol=1e-6)
    assert set(np.unique(ds["sic"].values[:, ds["mask"].values == 0])) == {0.0}  # land stays 0


def test_open_run_refuses_bad_arguments_and_non_diffusion_runs(data_space_run, tmp_path):
    run = hs.open_run(data_space_run, device="cpu")
    bad_arguments = (
        ({"n": 0}, "n must be an integer >= 1, got 0"),
        ({"n": 2, "steps": 0}, "steps must be an integer >= 1, got 0"),
        ({"n": 2, "batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"n": 2, "seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"n": 2.5}, "n must be an integer >= 1, got 2.5"),
    )
    for bad, message in bad_arguments:
        with pytest.raises(ValueError, match=f"^{message}$") as raised:
            run.sample(**bad, progress=False)
        assert isinstance(raised.value, UserError)  # and the CLI's one-line kind
    with pytest.raises(UserError, match="not a run folder"):
        hs.open_run(tmp_path)
    # What the CLI checks, the API checks (was: an allocation of terabytes; a CUDA error deep in loading).
    with pytest.raises(
        ValueError, match=r"^n 1000000000000: the samples are assembled in memory, about .* GB"
    ) as raised:
        run.sample(10**12, progress=False)
    assert isinstance(raised.value, UserError)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="^device 'cuda': CUDA is not available on this machine; use device='cpu'$"):
            hs.open_run(data_space_run, device="cuda")
    with pytest.raises(UserError, match="^device 'gpu' is not a device name torch knows"):
        hs.open_run(data_space_run, device="gpu")


def test_open_dataset_has_the_samples_file_grid_and_aligns_with_samples(tiny_dataset, tmp_path):
    from hpc_seaice.data.format.samples_file import GRID_MAPPING_ATTRS, read_samples, samples_dataset, write_samples
    from hpc_seaice.data.format.static import read_static
    from hpc_seaice.data.geo.grid import grid_from_attrs

    static = read_static(tiny_dataset)
    fields = np.zeros((2, 5, *static.mask.shape), np.float32)
    write_samples(tmp_path / "s.nc", samples_dataset(fields, static.mask, static.lat, static.lon, {"run": "r"}))
    with hs.open_dataset(tiny_dataset, split="test") as ds, read_samples(tmp_path / "s.nc") as samples:
        # projected cell centres in metres, as static.h5's grid attributes place them (an independent source)
        x, y = grid_from_attrs(static.attrs, static.mask.shape)
        cell = float(np.diff(x).mean())
        np.testing.assert_allclose(ds["x"].values, x, atol=0.01 * cell)
        np.testing.assert_allclose(ds["y"].values, y, atol=0.01 * cell)
        assert ds["x"].attrs["units"] == "m" and ds["y"].attrs["standard_name"] == "projection_y_coordinate"
        assert ds["polar_stereographic"].attrs == samples["polar_stereographic"].attrs
        assert {k: ds["polar_stereographic"].attrs[k] for k in GRID_MAPPING_ATTRS} == GRID_MAPPING_ATTRS
        for name in ("sit", "sic", "damage", "siu", "siv", "mask"):
            assert ds[name].attrs["grid_mapping"] == "polar_stereographic", name
        assert ds["sic"].attrs["standard_name"] == samples["sic"].attrs["standard_name"]
        assert ds["mask"].dtype == samples["mask"].dtype
        aligned, same = xr.align(ds, samples, join="exact")  # raises if x or y differ at all
        assert aligned.sizes["x"] == same.sizes["x"] == static.mask.shape[1]
        diff = ds["sic"].isel(time=0) - samples["sic"].isel(sample=0)  # arithmetic on the shared grid
        assert diff.dims == ("y", "x") and diff.sizes == {"y": static.mask.shape[0], "x": static.mask.shape[1]}
