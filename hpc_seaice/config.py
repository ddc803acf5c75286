"""Typed experiment configuration: YAML files validated against dataclasses.

One :class:`ExperimentConfig` describes a run. It is loaded from YAML, takes dotted
``key.sub=value`` overrides from the command line, and is written back fully resolved next to
the run's outputs (``config.yaml``). Unknown keys and wrong types fail with one line naming the
key (:class:`~hpc_seaice.errors.UserError`).

A ``preset:`` entry in the ``unet`` or ``vae`` section loads ``configs/models/<preset>.yaml``
first and lets the section's other keys override it, so the paper and demo networks are named
once.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpc_seaice.errors import UserError

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class RunConfig:
    dir: str = "runs/default"
    keep_checkpoints: int = 3  # keep the latest k checkpoints


@dataclass
class DataConfig:
    path: str = ""  # sharded dataset folder (fields or latents)
    train_split: str = "train"
    val_split: str = "validation"
    num_workers: int = 2
    prefetch_factor: int = 2


@dataclass
class UNetConfig:
    """The one denoiser family, used in data space and latent space."""

    preset: str = ""
    in_channels: int = 5
    base_channels: int = 64
    channel_mult: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    blocks_per_level: int = 2
    block: str = "convnext"  # convnext | resnet
    bottleneck_blocks: int = 2  # transformer blocks at the lowest resolution
    attention_max_side: int = 32  # self-attention only where H, W <= this
    heads: int = 8
    embedding_dim: int = 256
    mlp_ratio: int = 4  # hidden width of the block and transformer MLPs, in multiples of the width
    kernel_size: int = 7  # depthwise kernel of the ConvNeXt blocks (odd; 3 is much faster on CPU)
    dropout: float = 0.0
    channels_last: bool = False
    compile: bool = False


@dataclass
class VAEConfig:
    preset: str = ""
    in_channels: int = 5
    latent_channels: int = 16
    base_channels: int = 32
    channel_mult: list[int] = field(default_factory=lambda: [1, 2, 4, 4])  # 3 downsamples = 8x
    blocks_per_level: int = 1
    block: str = "resnet"  # resnet | convnext (no FiLM in the VAE)
    decoder: str = "censored"  # censored | gaussian
    beta: float = 1e-4  # weight of the KL term (KL averaged per latent element, like the NLL per value)
    sigma_init: float = 0.5  # initial decoder scale per variable, in normalised units
    decoder_arch: str = "conv"  # conv (mirror of the encoder) | light (sub-pixel head, models/light_decoder.py)
    light_channels: list[int] = field(default_factory=lambda: [128, 48])  # light: widths on the latent and next grid
    refine_channels: int = 16  # light: hidden width of the full-resolution refinement (0 = none)
    frozen_encoder: str = ""  # an autoencoder run: train only the decoder, its encoder loaded and frozen
    channels_last: bool = False
    compile: bool = False


@dataclass
class DiffusionConfig:
    gamma_min: float = -20.0  # training log-SNR range
    gamma_max: float = 20.0
    schedule: str = "adaptive"  # adaptive (Kingma & Gao 2023) | cosine (fixed)
    adaptive_bins: int = 100
    adaptive_decay: float = 0.999
    sampler_steps: int = 20
    sampler_gamma_min: float = -10.0  # sampling log-SNR range: sigma_ve = exp(-gamma / 2)
    sampler_gamma_max: float = 15.0
    sampler_rho: float = 7.0


@dataclass
class OptimConfig:
    lr: float = 2e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    warmup_steps: int = 5000
    grad_clip: float = 1.0
    ema_decay: float = 0.999


@dataclass
class TrainConfig:
    max_steps: int = 1000
    batch_size: int = 8  # global batch = micro_batch_size x grad_accum x world size
    micro_batch_size: int = 0  # per rank; 0 = batch_size / (world size x grad_accum)
    grad_accum: int = 1
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    val_every: int = 100
    val_batches: int = 4
    image_every: int = 0  # 0 = with validation
    max_nonfinite_steps: int = 5  # stop after this many non-finite steps in a row
    progress: bool = True
    debug_nan_steps: list[int] = field(default_factory=list)  # fault injection for tests


@dataclass
class EngineConfig:
    name: str = "ddp"  # ddp | deepspeed
    zero_stage: int = 0
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16
    deepspeed_config: str = ""  # optional user DeepSpeed JSON, merged under ours
    timeout_s: float = 600.0  # collective timeout; a lost peer fails every rank within it


@dataclass
class ExperimentConfig:
    stage: str = "diffusion"  # autoencoder | diffusion
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)


CHOICES: dict[str, tuple[Any, ...]] = {
    "stage": ("autoencoder", "diffusion"),
    "unet.block": ("convnext", "resnet"),
    "vae.block": ("resnet", "convnext"),
    "vae.decoder": ("censored", "gaussian"),
    "diffusion.schedule": ("adaptive", "cosine"),
    "engine.name": ("ddp", "deepspeed"),
    "engine.zero_stage": (0, 1, 2, 3),
    "engine.precision": ("auto", "fp32", "bf16"),
}


def _check_value(key: str, value: Any, hint: Any) -> Any:
    """Return ``value`` converted to ``hint`` or raise a one-line UserError naming ``key``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _check_value(key, value, args[0])
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{key}': expected a list, got {value!r}")
        return [_check_value(f"{key}[{i}]", v, item_hint) for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"config key '{key}': expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                return number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"config key '{key}': expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint} for {key}")  # programmer error


def _load_preset(section: str, name: str) -> dict[str, Any]:
    path = CONFIG_ROOT / "models" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONFIG_ROOT / "models").glob("*.yaml"))
        raise UserError(f"config key '{section}.preset': unknown preset {name!r} (known: {known})")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a preset must be a mapping of {section} keys")
    return data


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise UserError(f"config key '{prefix.rstrip('.')}': expected a mapping, got {data!r}")
    if cls in (UNetConfig, VAEConfig) and data.get("preset"):
        data = {**_load_preset(prefix.rstrip("."), data["preset"]), **data}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise UserError(f"unknown config key '{prefix}{key}' (known: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        key = f"{prefix}{f.name}"
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(hint, data[f.name], key + ".")
        else:
            value = _check_value(key, data[f.name], hint)
            if key in CHOICES and value not in CHOICES[key]:
                raise UserError(f"config key '{key}': {value!r} is not one of {CHOICES[key]}")
            kwargs[f.name] = value
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], value), the value parsed as YAML."""
    if "=" not in text:
        raise UserError(f"override {text!r}: expected key.sub=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each dotted override applied."""
    result = yaml.safe_load(yaml.safe_dump(data)) or {}
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"override {text!r}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return result


# key -> (lowest allowed, highest allowed); None = open on that side
RANGES: dict[str, tuple[float | None, float | None]] = {
    "run.keep_checkpoints": (1, None),
    "data.num_workers": (0, None),
    "data.prefetch_factor": (1, None),
    "optim.lr": (0, None),
    "optim.min_lr": (0, None),
    "optim.weight_decay": (0, None),
    "optim.warmup_steps": (0, None),
    "optim.grad_clip": (0, None),
    "optim.ema_decay": (0, 1),
    "train.max_steps": (0, None),
    "train.seed": (0, None),
    "train.batch_size": (1, None),
    "train.micro_batch_size": (0, None),
    "train.grad_accum": (1, None),
    "train.log_every": (1, None),
    "train.checkpoint_every": (1, None),
    "train.val_every": (0, None),
    "train.val_batches": (1, None),
    "train.image_every": (0, None),
    "train.max_nonfinite_steps": (1, None),
    "diffusion.sampler_steps": (1, None),
    "vae.beta": (0, None),
    "engine.timeout_s": (1, None),
}


def _check_ranges(cfg: ExperimentConfig) -> None:
    for key, (low, high) in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise UserError(f"config key '{key}': {value!r} must be {bounds}")


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    cfg = _build(ExperimentConfig, data or {}, "")
    _check_ranges(cfg)
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a YAML experiment config, apply dotted overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping")
    return config_from_dict(apply_overrides(data, overrides or []))


def with_absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """A copy whose folder and file paths are absolute, so a run folder works from any directory."""
    cfg = copy.deepcopy(cfg)
    cfg.run.dir = str(Path(cfg.run.dir).expanduser().resolve())
    if cfg.data.path:
        cfg.data.path = str(Path(cfg.data.path).expanduser().resolve())
    if cfg.vae.frozen_encoder:
        cfg.vae.frozen_encoder = str(Path(cfg.vae.frozen_encoder).expanduser().resolve())
    if cfg.engine.deepspeed_config:
        cfg.engine.deepspeed_config = str(Path(cfg.engine.deepspeed_config).expanduser().resolve())
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: Any, path: str | Path) -> None:
    """Write the fully resolved config as YAML (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    tmp.replace(path)
