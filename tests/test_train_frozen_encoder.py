"""Training a new decoder against a frozen encoder (``vae.frozen_encoder``): latents stay valid."""

import pytest
import torch

from hpc_seaice.config import config_from_dict
from hpc_seaice.data.format.manifest import read_manifest
from hpc_seaice.data.format.static import read_static
from hpc_seaice.errors import UserError
from hpc_seaice.models.build import build_stage_model
from hpc_seaice.runtime.checkpoint import latest_checkpoint
from hpc_seaice.train.trainer import run_training
from tests.helpers import tiny_autoencoder_config


def weights(run_dir, which: str) -> dict[str, torch.Tensor]:
    """The latest checkpoint's training weights (``model``) or EMA weights (``ema``)."""
    state = torch.load(latest_checkpoint(run_dir) / "model.pt", weights_only=True)
    return state["model"] if which == "model" else state["ema"]["module"]


def test_frozen_encoder_stays_bit_identical_while_a_light_decoder_trains(tiny_dataset, tmp_path):
    source = tmp_path / "conv"
    cfg = tiny_autoencoder_config(tiny_dataset, source, train={"max_steps": 3, "checkpoint_every": 3})
    assert run_training(config_from_dict(cfg)) == 0
    source_ema = weights(source, "ema")

    light = tmp_path / "light"
    vae = {"preset": "tiny-vae", "decoder_arch": "light", "light_channels": [16, 8], "frozen_encoder": str(source)}
    cfg = tiny_autoencoder_config(tiny_dataset, light, train={"max_steps": 3, "checkpoint_every": 3, "seed": 5})
    cfg["vae"] = vae
    cfg["optim"] = {"lr": 1e-2, "warmup_steps": 1}
    assert run_training(config_from_dict(cfg)) == 0

    for which in ("model", "ema"):
        trained = weights(light, which)
        encoder = [k for k in trained if k.startswith("encoder.")]
        assert encoder and all(torch.equal(trained[k], source_ema[k]) for k in encoder), which
    # The decoder did train: it moved away from its initial weights (same seed as the trainer's).
    resolved = config_from_dict(cfg)
    torch.manual_seed(resolved.train.seed)
    initial = build_stage_model(resolved, read_manifest(tiny_dataset), read_static(tiny_dataset)).state_dict()
    trained = weights(light, "model")
    decoder = [k for k in trained if k.startswith("decoder.")]
    assert decoder and any(not torch.equal(trained[k], initial[k]) for k in decoder)
    assert not torch.equal(trained["log_sigma"], initial["log_sigma"])


def test_frozen_encoder_must_be_an_autoencoder_run(tiny_dataset, tmp_path):
    cfg = tiny_autoencoder_config(tiny_dataset, tmp_path / "run", vae={"frozen_encoder": str(tmp_path)})
    with pytest.raises(UserError, match="vae.frozen_encoder.*not a run folder"):
        run_training(config_from_dict(cfg))
