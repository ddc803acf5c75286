"""Code written for GPUs, run on the CPU where torch allows it: bf16 autocast training and the
compiled sampling decoder (torch.compile with Inductor, which generates C++ here). The page-locked
ring is in tests/test_data_batch_loader.py and ``benchmarks/gpu.sh --dry`` in
tests/test_benchmarks_gpu_dry.py.
"""

from __future__ import annotations

import pytest
import torch
from helpers import losses, tiny_diffusion_config

from hpc_seaice.config import config_from_dict
from hpc_seaice.inference.generate import LatentDecoder, _SamplingNetwork
from hpc_seaice.models.build import build_vae
from hpc_seaice.train.trainer import run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 20
# bf16 keeps 8 bits of mantissa (relative rounding up to 2**-9 per operation); the loss is a mean over
# 4 x 5 x 32 x 32 values, so rounding errors mostly average out. Measured over these 20 steps: largest
# relative loss difference 1.1e-4, mean 2.6e-5 (7 of 20 steps below 5e-6). 2e-3 is
# half of one bf16 rounding step of the loss itself: a diverging bf16 run fails it.
BF16_RTOL = 2e-3


def test_bf16_autocast_trains_on_cpu_and_follows_fp32_within_the_stated_tolerance(tiny_dataset, tmp_path):
    runs = {}
    for precision in ("fp32", "bf16"):
        config = tiny_diffusion_config(
            tiny_dataset,
            tmp_path / precision,
            engine={"precision": precision},
            train={"max_steps": STEPS, "checkpoint_every": STEPS},
        )
        assert run_training(config_from_dict(config)) == 0
        runs[precision] = losses(tmp_path / precision)
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert sorted(bf16) == sorted(fp32) == list(range(1, STEPS + 1))
    relative = [abs(bf16[s] - fp32[s]) / abs(fp32[s]) for s in fp32]
    assert max(relative) < BF16_RTOL, relative
    assert max(relative) > 1e-6, "bf16 gave the fp32 losses: autocast did not run"


def test_the_compiled_sampling_decoder_runs_on_cpu_and_matches_eager():
    """LatentDecoder(compile=True) goes through compile_for_sampling (Inductor's default mode on a
    CPU; CUDA graphs only on a GPU) and decodes what the eager decoder does."""
    torch.manual_seed(0)
    # Smaller than tiny-vae (one down-sampling level): Inductor's C++ generation is most of the time.
    cfg = config_from_dict({"vae": {"preset": "tiny-vae", "base_channels": 4, "channel_mult": [1, 2]}}).vae
    vae = build_vae(cfg, data_mean=[0.0] * 5, data_std=[1.0] * 5, lower=[-9.0] * 5, upper=[9.0] * 5).eval()
    mask = torch.ones(8, 8)
    mask[:2, :2] = 0
    z = torch.randn(2, 4, 4, 4)
    before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled = LatentDecoder(vae, [0.1] * 4, [2.0] * 4, mask, torch.device("cpu"), compile=True)
    eager = LatentDecoder(vae, [0.1] * 4, [2.0] * 4, mask, torch.device("cpu"), compile=False)
    assert isinstance(compiled.network, _SamplingNetwork) and not compiled.network.cuda_graphs
    with torch.no_grad():
        got, want = compiled(z), eager(z)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > before  # really compiled
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert float(got[0][:, :, :2, :2].abs().max()) == 0.0  # land stays 0 through the compiled pass
