"""``vae.frozen_encoder`` pointing at the wrong thing: every case is one line naming the key."""

from __future__ import annotations

import shutil

import pytest
import torch
from helpers import tiny_autoencoder_config, tiny_diffusion_config

from hpc_seaice.config import config_from_dict, dump_config
from hpc_seaice.errors import UserError
from hpc_seaice.runtime.checkpoint import latest_checkpoint
from hpc_seaice.train.trainer import run_training


def frozen_from(data, run_dir, source, **vae) -> None:
    cfg = tiny_autoencoder_config(data, run_dir, vae={"frozen_encoder": str(source), **vae}, train={"max_steps": 1})
    run_training(config_from_dict(cfg))


@pytest.fixture(scope="module")
def source(tiny_dataset, tmp_path_factory):
    """A trained tiny autoencoder run (2 steps) with latent_channels 4."""
    run = tmp_path_factory.mktemp("frozen") / "source"
    cfg = tiny_autoencoder_config(tiny_dataset, run, train={"max_steps": 2, "checkpoint_every": 2})
    assert run_training(config_from_dict(cfg)) == 0
    return run


def one_line_naming_the_key(info: pytest.ExceptionInfo) -> str:
    text = str(info.value)
    assert "vae.frozen_encoder" in text and "\n" not in text
    return text


def test_another_latent_shape_is_refused(tiny_dataset, tmp_path, source):
    with pytest.raises(UserError) as info:
        frozen_from(tiny_dataset, tmp_path / "run", source, latent_channels=8)
    assert "encoder.conv_out" in one_line_naming_the_key(info)


def test_another_mask_layout_is_refused(tiny_dataset, tmp_path, source):
    with pytest.raises(UserError) as info:
        frozen_from(tiny_dataset, tmp_path / "run", source, mask_channel=False)
    assert "encoder.conv_in" in one_line_naming_the_key(info)


@pytest.mark.parametrize(
    "tiny_config, reason",
    [(tiny_diffusion_config, "diffusion run"), (tiny_autoencoder_config, "checkpoint")],
    ids=["a-diffusion-run", "an-autoencoder-run-without-a-checkpoint"],
)
def test_a_run_that_holds_no_trained_encoder_is_refused(tiny_dataset, tmp_path, tiny_config, reason):
    """A folder with only a run's config.yaml: a diffusion run's, or an autoencoder run's that never
    wrote a checkpoint."""
    other = tmp_path / "other"
    dump_config(config_from_dict(tiny_config(tiny_dataset, other)), other / "config.yaml")
    with pytest.raises(UserError) as info:
        frozen_from(tiny_dataset, tmp_path / "run", other)
    assert reason in one_line_naming_the_key(info)


def test_a_frozen_encoder_run_resumes_after_its_source_moved(tiny_dataset, tmp_path, source):
    """On resume the run's own checkpoint holds the encoder; the source run is needed only to start."""
    copy = tmp_path / "source"
    shutil.copytree(source, copy)
    run = tmp_path / "light"

    def config(steps: int) -> dict:
        vae = {"decoder_arch": "light", "light_channels": [16, 8], "frozen_encoder": str(copy)}
        return tiny_autoencoder_config(tiny_dataset, run, vae=vae, train={"max_steps": steps, "checkpoint_every": 1})

    assert run_training(config_from_dict(config(1))) == 0
    cfg = config_from_dict(config(2))  # resolved while the source is in place, as a resume command line is
    shutil.move(copy, tmp_path / "moved")
    assert run_training(cfg) == 0
    source_ema = torch.load(latest_checkpoint(source) / "model.pt", weights_only=True)["ema"]["module"]
    state = torch.load(latest_checkpoint(run) / "model.pt", weights_only=True)
    assert latest_checkpoint(run).name.endswith("2")
    for weights in (state["model"], state["ema"]["module"]):
        encoder = [k for k in weights if k.startswith("encoder.")]
        assert encoder and all(torch.equal(weights[k], source_ema[k]) for k in encoder)
