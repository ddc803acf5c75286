"""Samples NetCDF: round trip with CF attributes, and one-line errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from hpc_seaice.data.format.samples_file import read_samples, sample_arrays, samples_dataset, write_samples
from hpc_seaice.data.format.variables import UNITS, VARIABLES
from hpc_seaice.errors import UserError


def _fields(n=3, h=6, w=7, seed=0):
    rng = np.random.default_rng(seed)
    fields = rng.uniform(0, 1, size=(n, len(VARIABLES), h, w)).astype(np.float32)
    mask = np.ones((h, w), dtype=np.float32)
    mask[0, :3] = 0
    lat, lon = np.meshgrid(np.linspace(70, 90, h), np.linspace(-180, 180, w), indexing="ij")
    return fields, mask, lat, lon


def test_round_trip_with_attributes(tmp_path):
    fields, mask, lat, lon = _fields()
    raw = fields + 0.5
    attrs = {
        "run": "runs/demo",
        "checkpoint_step": 1200,
        "sampler": "heun",
        "steps": 20,
        "seed": 7,
        "model": "censored LDM",
        "ema": True,
        "note": None,
    }
    path = write_samples(tmp_path / "sub" / "s.nc", samples_dataset(fields, mask, lat, lon, attrs, raw=raw))
    assert path.is_file() and not list(path.parent.glob(".*tmp*"))

    with read_samples(path) as ds:
        assert ds["sit"].dims == ("sample", "y", "x")
        assert ds.sizes == {"sample": 3, "y": 6, "x": 7}
        for name in VARIABLES:
            assert ds[name].attrs["units"] == UNITS[name]
            assert ds[name].attrs["long_name"]
            assert ds[name].dtype == np.float32
        assert ds["sic"].attrs["valid_min"] == 0 and ds["sic"].attrs["valid_max"] == 1
        assert ds["sit"].attrs["valid_min"] == 0 and "valid_max" not in ds["sit"].attrs
        assert "valid_min" not in ds["siu"].attrs
        assert ds["sit"].attrs["standard_name"] == "sea_ice_thickness"
        assert ds["lat"].attrs["units"] == "degrees_north" and ds["lon"].attrs["units"] == "degrees_east"
        assert ds.attrs["Conventions"].startswith("CF")
        assert ds.attrs["run"] == "runs/demo" and ds.attrs["checkpoint_step"] == 1200
        assert ds.attrs["sampler"] == "heun" and ds.attrs["steps"] == 20 and ds.attrs["seed"] == 7
        assert ds.attrs["ema"] == 1 and ds.attrs["note"] == "none"
        got, got_raw, got_mask = sample_arrays(ds)
        np.testing.assert_array_equal(got, fields)
        np.testing.assert_array_equal(got_raw, raw)
        np.testing.assert_array_equal(got_mask, mask)
        np.testing.assert_allclose(ds["lat"].values, lat, rtol=1e-6)

    # Another NetCDF library reads the same file.
    with xr.open_dataset(path, engine="netcdf4") as ds:
        np.testing.assert_array_equal(ds["damage"].values, fields[:, 2])
        assert ds["damage_raw"].attrs["units"] == "1"


def test_without_raw(tmp_path):
    fields, mask, lat, lon = _fields(n=2)
    path = write_samples(tmp_path / "s.nc", samples_dataset(fields, mask, lat, lon, {}))
    with read_samples(path) as ds:
        assert "sit_raw" not in ds
        _, raw, _ = sample_arrays(ds)
        assert raw is None


def test_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_samples(tmp_path / "missing.nc")
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    with pytest.raises(UserError, match="not a readable NetCDF"):
        read_samples(junk)
    fields, mask, lat, lon = _fields(n=1)
    ds = xr.Dataset({"sit": (("sample", "y", "x"), fields[:, 0]), "mask": (("y", "x"), mask)})
    partial = tmp_path / "partial.nc"
    ds.to_netcdf(partial, engine="h5netcdf")
    with pytest.raises(UserError, match=r"lacks variable\(s\) sic, damage, siu, siv"):
        read_samples(partial)
    with pytest.raises(ValueError):
        write_samples(tmp_path / "x.nc", samples_dataset(fields[:, :3], mask, lat, lon, {}))
