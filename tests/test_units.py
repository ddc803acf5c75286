"""Units read, not assumed: ``data convert`` and ``evaluate`` convert each variable's ``units``
to the project's (m, 1, 1, m s-1), refuse missing or unknown units in one line, and take
``--assume-units`` instead."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from hpc_seaice.cli import main
from hpc_seaice.data.convert.pipeline import convert
from hpc_seaice.data.format.samples_file import samples_dataset, write_samples
from hpc_seaice.data.format.units import parse_assume_units, to_project_factor
from hpc_seaice.data.format.variables import UNITS, VARIABLES
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.errors import UserError

# Each file's units and the factor from the project's units to them (independent of pint).
ODD = [
    {"sit": ("cm", 100.0), "sic": ("%", 100.0), "damage": ("1", 1.0), "siu": ("km/day", 86.4), "siv": ("cm/s", 100.0)},
    {
        "sit": ("mm", 1000.0),
        "sic": ("percent", 100.0),
        "damage": ("%", 100.0),
        "siu": ("km d-1", 86.4),
        "siv": ("m s-1", 1.0),
    },
]


def test_factors_of_the_unit_strings_the_inputs_use():
    cases = {
        ("sit", "cm"): 0.01, ("sit", "mm"): 0.001, ("sit", "m"): 1.0, ("sic", "%"): 0.01, ("sic", "percent"): 0.01,
        ("sic", "1"): 1.0, ("siu", "km/day"): 1 / 86.4, ("siu", "km d-1"): 1 / 86.4, ("siv", "cm/s"): 0.01,
        ("siv", "m s-1"): 1.0, ("siv", "cm s-1"): 0.01,
    }  # fmt: skip
    for (name, units), factor in cases.items():
        assert to_project_factor("f.nc", name, {"units": units}, {}) == pytest.approx(factor, rel=1e-12), units
    assert parse_assume_units(None) == {} and parse_assume_units("project") == UNITS
    assert parse_assume_units("sit=cm, sic=%") == {"sit": "cm", "sic": "%"}
    for bad, needle in [("thick=m", "NAME=UNITS"), ("sit", "NAME=UNITS"), ("sit=m s-1", "not convertible to 'm'")]:
        with pytest.raises(UserError, match=needle):
            parse_assume_units(bad)
    for attrs, needle in [
        ({}, "no units attribute"),
        ({"units": " "}, "no units attribute"),
        ({"units": "splork"}, "pint"),
        ({"units": "furlong"}, "not convertible"),
    ]:
        with pytest.raises(UserError, match=f"f.nc: variable 'vx' \\(siu\\).*{needle}"):
            to_project_factor("f.nc", "siu", attrs, {}, source_name="vx")


@pytest.fixture(scope="module")
def fields(tiny_dataset):
    """The tiny set's physical values, NaN on land as in model output, with its time axis."""
    ds = ShardedDataset(tiny_dataset, split=None, normalize=False)
    x = np.stack([ds.raw(i) for i in range(len(ds))]).astype(np.float64)
    x[:, :, ds.static.mask < 0.5] = np.nan
    return x, ds


def _write(path, x, times, units: dict[str, tuple[str, float]] | None, drop: str | None = None):
    """``x`` (project units) written in ``units`` (name -> (string, factor)); ``drop``: a variable without units."""
    data = {}
    for k, name in enumerate(VARIABLES):
        text, factor = units[name] if units else (UNITS[name], 1.0)
        attrs = {} if name == drop else {"units": text}
        data[name] = (("time", "y", "x"), (x[:, k] * factor).astype(np.float32), attrs)
    xr.Dataset(data, coords={"time": times.astype("datetime64[ns]")}).to_netcdf(path, engine="h5netcdf")
    return str(path)


def test_convert_stores_files_in_cm_percent_km_per_day_and_cm_per_s_in_the_projects_units(fields, tmp_path):
    x, ds = fields
    half = len(x) // 2  # two files of one record, each in units of its own
    paths = [
        _write(tmp_path / f"p{i}.nc", x[sl], ds.times[sl], ODD[i])
        for i, sl in enumerate([slice(0, half), slice(half, None)])
    ]
    convert(paths, tmp_path / "out", shard_size=16, progress=False)
    out = ShardedDataset(tmp_path / "out", split=None, normalize=False)
    stored = np.stack([out.raw(i) for i in range(len(out))])
    expected = np.nan_to_num(x, nan=0.0)
    np.testing.assert_allclose(stored, expected, rtol=2e-6, atol=1e-7)
    assert 0.5 < np.nanmax(stored[:, 0]) < 20  # metres, not cm
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["units"] == [UNITS[v] for v in VARIABLES]


def test_missing_units_are_one_line_and_assume_units_overrides(fields, tmp_path, capsys):
    x, ds = fields
    path = _write(tmp_path / "bare.nc", x[:8], ds.times[:8], None, drop="damage")
    assert (
        main(["data", "convert", path, "--out", str(tmp_path / "a"), "--splits", "train=2009-01-01..2030-01-01"]) == 2
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and path in errors[0] and "'damage'" in errors[0] and "--assume-units" in errors[0], errors
    splits = ["--splits", "train=2009-01-01..2030-01-01"]
    for option in (["--assume-units", "damage=1"], ["--assume-units"]):
        out = tmp_path / f"b{len(option)}"
        assert main(["data", "convert", path, "--out", str(out), *splits, *option]) == 0
        stored = np.stack([ShardedDataset(out, split=None, normalize=False).raw(i) for i in range(8)])
        np.testing.assert_allclose(stored, np.nan_to_num(x[:8]), rtol=2e-6, atol=1e-7)
    capsys.readouterr()
    assert main(["data", "convert", path, "--out", str(tmp_path / "c"), *splits, "--assume-units", "sit=K"]) == 2
    assert "--assume-units sit=K" in capsys.readouterr().err


def _numbers(tree, prefix: str = "") -> dict[str, float]:
    """Every number in a nested metrics entry, by its path."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _numbers(sub, f"{prefix}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, sub in enumerate(tree) for k, v in _numbers(sub, f"{prefix}/{i}").items()}
    if isinstance(tree, bool) or not isinstance(tree, int | float):
        return {}
    return {prefix: float(tree)}


def test_evaluate_scores_a_samples_file_in_cm_like_the_same_file_in_m(fields, tiny_dataset, tmp_path, capsys):
    _, ds = fields
    test = ShardedDataset(tiny_dataset, split="test", normalize=False)
    members = np.stack([test.raw(i) for i in range(4)])[::-1].copy()  # an "ensemble": test states reversed
    static = ds.static
    metres = samples_dataset(members, static.mask, static.lat, static.lon, {"model": "m"}, raw=members)
    write_samples(tmp_path / "m.nc", metres)
    centimetres = metres.copy(deep=True)
    for name in ("sit", "sit_raw"):
        centimetres[name] = centimetres[name] * 100
        centimetres[name].attrs = {**metres[name].attrs, "units": "cm"}
    centimetres.attrs["model"] = "cm"
    write_samples(tmp_path / "cm.nc", centimetres)
    out = tmp_path / "eval"
    argv = ["evaluate", "--samples", str(tmp_path / "m.nc"), str(tmp_path / "cm.nc"), "--data", str(tiny_dataset)]
    assert main([*argv, "--out", str(out), "--max-states", "3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["models"]
    a, b = (_numbers(metrics[k]) for k in ("m", "cm"))
    assert len(a) > 50 and a.keys() == b.keys()
    for key in a:  # every score the same, up to float32 rounding of x 100 / 100
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-9, nan_ok=True), key

    del centimetres["sit"].attrs["units"]
    write_samples(tmp_path / "bare.nc", centimetres)
    capsys.readouterr()
    argv = ["evaluate", "--samples", str(tmp_path / "bare.nc"), "--data", str(tiny_dataset), "--max-states", "3"]
    assert main([*argv, "--out", str(tmp_path / "e2")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "bare.nc" in errors[0] and "'sit'" in errors[0], errors
    assert main([*argv, "--out", str(tmp_path / "e3"), "--assume-units", "sit=cm"]) == 0
