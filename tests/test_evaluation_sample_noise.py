"""``hpc-seaice sample`` checks its noise range against the data set's leading-PC std."""

from __future__ import annotations

import xarray as xr
from helpers import hpc_seaice, tiny_diffusion_config

from hpc_seaice.config import config_from_dict
from hpc_seaice.data.format.static import read_static
from hpc_seaice.data.stats.normalisation import add_pc1_std
from hpc_seaice.train.trainer import run_training


def test_sample_warns_once_when_sigma_max_is_below_three_pc_stds(tiny_dataset_copy, tmp_path):
    pc1 = add_pc1_std(tiny_dataset_copy)
    assert read_static(tiny_dataset_copy).pc1_std == pc1 > 0
    # sigma_max = e^0.5 ~ 1.65 is far below 3 x the leading-PC std of the tiny data set
    narrow = {"sampler_gamma_min": -1.0, "sampler_steps": 3}
    run_dir = tmp_path / "narrow"
    config = tiny_diffusion_config(tiny_dataset_copy, run_dir, train={"max_steps": 1}, diffusion=narrow)
    assert run_training(config_from_dict(config)) == 0
    out = tmp_path / "s.nc"
    proc = hpc_seaice("sample", "--run", str(run_dir), "--num", "1", "--out", str(out))
    warnings = [line for line in proc.stderr.splitlines() if "sigma_max" in line]
    assert len(warnings) == 1 and "leading principal-component std" in warnings[0], proc.stderr
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds.attrs["steps"] == 3  # --steps defaults to the run's diffusion.sampler_steps
        assert ds.attrs["sampler"].endswith("equally spaced in log-SNR, gamma -1 .. 15")  # the run's spacing
        assert ds.attrs["decoder"] == "none"  # data space: out-of-bounds counts apply

    # the default noise range is wide enough: no warning
    run_dir = tmp_path / "default"
    config = tiny_diffusion_config(tiny_dataset_copy, run_dir, train={"max_steps": 1})
    assert run_training(config_from_dict(config)) == 0
    proc = hpc_seaice("sample", "--run", str(run_dir), "--num", "1", "--out", str(tmp_path / "d.nc"), "--steps", "2")
    assert "sigma_max" not in proc.stderr
