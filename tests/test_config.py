"""The typed config: YAML + dotted overrides, one-line errors naming the key."""

from pathlib import Path

import pytest
import yaml

from hpc_seaice.cli import main
from hpc_seaice.config import PRESET_DIR, dump_config, load_config
from hpc_seaice.errors import UserError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"  # the experiments users run


def write(tmp_path, data):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_shipped_config_loads():
    for path in sorted((CONFIGS / "demo").glob("*.yaml")) + sorted((CONFIGS / "paper").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.stage in ("autoencoder", "diffusion", "refiner"), path
        if cfg.stage == "refiner":  # a refiner names its latent run and is conditioned on the 5 decoded variables
            assert cfg.refine.latent_run and cfg.unet.cond_channels == cfg.unet.in_channels == 5, path


def test_overrides_types_and_presets(tmp_path):
    path = write(tmp_path, {"stage": "diffusion", "unet": {"preset": "tiny-unet", "base_channels": 8}})
    cfg = load_config(path, ["train.max_steps=7", "optim.lr=0.5", "engine.name=deepspeed", "unet.channel_mult=[1,2]"])
    assert cfg.train.max_steps == 7 and cfg.optim.lr == 0.5 and cfg.engine.name == "deepspeed"
    assert cfg.unet.base_channels == 8  # the section overrides its preset
    assert cfg.unet.channel_mult == [1, 2]
    preset = yaml.safe_load((PRESET_DIR / "tiny-unet.yaml").read_text())
    assert cfg.unet.embedding_dim == preset["embedding_dim"]  # the rest comes from the preset


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(write(tmp_path, {"unet": {"preset": "tiny-unet"}}), ["train.seed=3"])
    dump_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == cfg


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.max_step=3", "unknown config key 'train.max_step'"),
        ("train.max_steps=abc", "config key 'train.max_steps': expected an integer"),
        ("train.max_steps=1.5", "config key 'train.max_steps': expected an integer"),
        ("engine.name=horovod", "config key 'engine.name': 'horovod' is not one of"),
        ("unet.preset=nope", "unknown preset 'nope'"),
        ("train=3", "config key 'train': expected a mapping"),
        ("train.progress=maybe", "config key 'train.progress': expected true/false"),
        ("novalue", "expected key.sub=value"),
        ("train.log_every=0", "config key 'train.log_every': 0 must be >= 1"),
        ("optim.ema_decay=1.5", "config key 'optim.ema_decay': 1.5 must be <= 1"),
        ("data.num_workers=-1", "config key 'data.num_workers': -1 must be >= 0"),
        ("train.seed=-1", "config key 'train.seed': -1 must be >= 0"),
        ("optim.lr=fast", "config key 'optim.lr': expected a number"),
        ("optim.lr=nan", "config key 'optim.lr': expected a number"),
        ("optim.ema_decay=inf", "config key 'optim.ema_decay': expected a number"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, override, needle):
    with pytest.raises(UserError) as info:
        load_config(write(tmp_path, {}), [override])
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_reports_user_errors_in_one_line(tmp_path, capsys):
    code = main(["train", str(tmp_path / "missing.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "missing.yaml" in err[0]
    code = main(["train", str(write(tmp_path, {"stage": "diffusion"})), "train.bogus=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "unknown config key 'train.bogus'" in err[0]


def test_exponent_without_a_dot_is_a_number(tmp_path):
    """YAML 1.1 reads 1e-4 as a string; the config takes it as the number users mean."""
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-4\n  min_lr: 2E-6\n")
    cfg = load_config(path, ["optim.weight_decay=5e-2"])
    assert (cfg.optim.lr, cfg.optim.min_lr, cfg.optim.weight_decay) == (1e-4, 2e-6, 5e-2)


def test_paths_become_absolute_for_the_run_folder(tmp_path, monkeypatch):
    from hpc_seaice.config import with_absolute_paths

    monkeypatch.chdir(tmp_path)
    cfg = load_config(write(tmp_path, {}), ["data.path=data/set", "run.dir=runs/a", "engine.deepspeed_config=ds.json"])
    resolved = with_absolute_paths(cfg)
    assert resolved.data.path == str(tmp_path / "data/set") and resolved.run.dir == str(tmp_path / "runs/a")
    assert resolved.engine.deepspeed_config == str(tmp_path / "ds.json")
    assert cfg.data.path == "data/set"  # the original is left as it was


def test_deepspeed_json_stage_must_match_the_config(tmp_path):
    from hpc_seaice.train.engines import deepspeed_config

    json_path = tmp_path / "ds.json"
    json_path.write_text('{"zero_optimization": {"stage": 3}}')
    cfg = load_config(write(tmp_path, {}), ["engine.name=deepspeed", f"engine.deepspeed_config={json_path}"])
    with pytest.raises(UserError, match="set engine.zero_stage=3"):
        deepspeed_config(cfg.optim, cfg.train, cfg.engine, "fp32", 1)
    cfg.engine.zero_stage = 3
    assert deepspeed_config(cfg.optim, cfg.train, cfg.engine, "fp32", 1)["zero_optimization"]["stage"] == 3
