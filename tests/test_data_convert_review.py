"""Review of ``data convert`` over many inputs: errors name the file at fault, archives whose files
name their dimensions differently still convert."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import xarray as xr

from hpc_seaice.data.convert.inputs import open_inputs
from hpc_seaice.data.convert.pipeline import convert
from hpc_seaice.data.format.variables import UNITS
from hpc_seaice.errors import UserError

NAMES = ["sit", "sic", "damage", "siu", "siv"]


def _parts(n_files: int = 3, steps: int = 4, grid: tuple[int, int] = (5, 4)) -> tuple[list[xr.Dataset], np.ndarray]:
    """``n_files`` consecutive pieces of one record; values encode (time, variable, y, x)."""
    n = n_files * steps
    t = np.arange(n)
    values = t[:, None, None, None] * 1000.0 + np.arange(5)[None, :, None, None] * 100.0
    values = (values + np.arange(grid[0] * grid[1]).reshape(grid)[None, None]).astype(np.float32)
    times = np.datetime64("2010-01-01", "ns") + t * np.timedelta64(1, "D")
    units = dict(zip(NAMES, UNITS.values()))  # the project's units, so values are stored as given
    data = {v: (("time", "y", "x"), values[:, k], {"units": units[v]}) for k, v in enumerate(NAMES)}
    ds = xr.Dataset(data, coords={"time": times})
    return [ds.isel(time=slice(i * steps, (i + 1) * steps)) for i in range(n_files)], values


def test_an_unreadable_chunk_names_its_file_not_the_first_of_the_block(tmp_path):
    parts, _ = _parts()
    paths = [tmp_path / f"part{i}.nc" for i in range(3)]
    for part, path in zip(parts, paths):
        part.to_netcdf(path, engine="h5netcdf", encoding={v: {"zlib": True} for v in NAMES})
    with h5py.File(paths[1], "r") as f:  # metadata stays readable: check_file passes, the read fails
        chunk = f["sic"].id.get_chunk_info(0)
    with open(paths[1], "r+b") as fh:
        fh.seek(chunk.byte_offset + 2)
        fh.write(b"\xff" * (chunk.size - 4))
    inputs = open_inputs([str(p) for p in paths], NAMES)  # one block holds all 12 time steps
    try:
        with pytest.raises(UserError, match=r"part1\.nc: cannot read variable 'sic'"):
            inputs.read(NAMES, slice(0, 12), slice(None), slice(None))
    finally:
        inputs.close()


def test_files_that_name_time_y_x_differently_are_read_as_one_record(tmp_path):
    parts, values = _parts()
    parts[1] = parts[1].rename({"time": "t", "y": "nj", "x": "ni"}).transpose("t", "ni", "nj")
    parts[1]["t"].attrs["axis"] = "T"
    paths = [tmp_path / f"part{i}.nc" for i in range(3)]
    for part, path in zip(parts, paths):
        part.to_netcdf(path, engine="h5netcdf")
    inputs = open_inputs([str(p) for p in paths], NAMES, block_bytes=3 * 4 * 5 * 4)  # blocks straddle files
    try:
        # 3 time steps per chunk in every file, the one with other names too (not one chunk per file)
        assert inputs.ds["sic"].data.chunks[0] == (3, 1, 3, 1, 3, 1)
        for lo in range(0, 12, 5):
            steps = slice(lo, min(12, lo + 5))
            assert np.array_equal(inputs.read(NAMES, steps, slice(1, 4), slice(0, 3)), values[steps, :, 1:4, 0:3])
    finally:
        inputs.close()


def test_a_time_step_without_any_finite_thickness_names_its_file_and_time(tmp_path):
    parts, _ = _parts()
    parts[2]["sit"][1] = np.nan  # e.g. a missing zarr chunk or a failed model output: read as all NaN
    paths = [tmp_path / f"part{i}.nc" for i in range(3)]
    for part, path in zip(parts, paths):
        part.to_netcdf(path, engine="h5netcdf")
    splits = {"train": ["2010-01-01", "2010-01-06"], "validation": ["2010-01-07", "2010-01-09"]}
    splits["test"] = ["2010-01-10", "2010-01-12"]
    with pytest.raises(UserError, match=r"part2\.nc: 'sit' is NaN everywhere at 2010-01-10"):
        convert([str(p) for p in paths], tmp_path / "out", splits=splits, progress=False)


def test_cells_nan_in_only_some_time_steps_are_reported_not_dropped_silently(tmp_path, capsys):
    parts, _ = _parts()
    for part in parts:  # physical values: thickness 1 m, concentration 0.5, damage 0.1, at rest
        for name, value in zip(NAMES, (1.0, 0.5, 0.1, 0.0, 0.0)):
            part[name][...] = value
        part["sit"][:, 0, 0] = np.nan  # land: NaN at every step, no warning for it
    parts[1]["sit"][2, 1:3, 2] = np.nan  # a gap: two ocean cells missing at one step (2010-01-07)
    parts[2]["sit"][0, 4, 3] = np.nan  # and one more, later
    paths = [tmp_path / f"part{i}.nc" for i in range(3)]
    for part, path in zip(parts, paths):
        part.to_netcdf(path, engine="h5netcdf")
    splits = {"train": ["2010-01-01", "2010-01-06"], "validation": ["2010-01-07", "2010-01-09"]}
    splits["test"] = ["2010-01-10", "2010-01-12"]
    convert([str(p) for p in paths], tmp_path / "out", splits=splits, progress=False)
    lines = capsys.readouterr().err.splitlines()
    err = [line for line in lines if "some time steps" in line]
    assert len(err) == 1, err
    assert "3 cells (against 16 ocean cells) have 'sit' finite in some time steps and NaN in others" in err[0]
    assert f"NaN at 2010-01-07T00:00:00 in {paths[1]}" in err[0]
    constant = [line for line in lines if "is constant on the train split" in line]  # all five are here
    assert len(constant) == 5 and all(line.startswith(f"{tmp_path / 'out' / 'static.h5'}: ") for line in constant)
    with h5py.File(tmp_path / "out" / "static.h5") as f:
        assert int(f["mask"][...].sum()) == 16


SIGTERM_DURING_WRITE = """
import os, signal, sys
from hpc_seaice.data.convert import pipeline as c
real_write = c._write
def write_then_terminated(inputs, staging, *args):
    real_write(inputs, staging, *args)  # the new set is complete in the staging folder...
    os.kill(os.getpid(), signal.SIGTERM)  # ...when the scheduler's SIGTERM arrives
c._write = write_then_terminated
c.convert([sys.argv[1]], sys.argv[2], splits={"train": ["2010-01-01", "2010-01-12"]}, overwrite=True, progress=False)
"""


def test_sigterm_while_writing_removes_the_staging_folder_and_keeps_the_old_set(tmp_path):
    """scancel or a time limit (SIGTERM) mid-write: exit 143, no staging folder, the old set intact.

    In a child process: there SIGTERM has its default action (end the process at once), as in a job.
    """
    import signal
    import subprocess
    import sys

    from hpc_seaice.data.format.manifest import read_manifest

    parts, _ = _parts(n_files=2, steps=6)
    paths = [tmp_path / f"part{i}.nc" for i in range(2)]
    for part, path in zip(parts, paths):
        (part / 20000.0).to_netcdf(path, engine="h5netcdf")  # every value within the physical bounds
    out = tmp_path / "out"
    convert([str(p) for p in paths], out, splits={"train": ["2010-01-01", "2010-01-12"]}, progress=False)
    before = read_manifest(out)
    child = subprocess.run([sys.executable, "-c", SIGTERM_DURING_WRITE, str(paths[0]), str(out)], capture_output=True)
    assert child.returncode == 128 + signal.SIGTERM, child.stderr.decode()[-2000:]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left
    assert read_manifest(out) == before  # the old data set untouched
