"""Typed experiment configuration: YAML files validated by pydantic models.

One :class:`ExperimentConfig` describes a run. It is loaded from YAML, takes dotted
``key.sub=value`` overrides from the command line, and is written back fully resolved next to
the run's outputs (``config.yaml``). Each rule sits beside its field: choices are ``Literal``
types, ranges are ``Field`` bounds, unknown keys are refused (``extra="forbid"``). Validation
is strict (no silent ``"1"`` -> ``1``), except that a float field also takes a string such as
``1e-4``, which YAML 1.1 reads as a string. Every failure becomes one
:class:`~hpc_seaice.errors.UserError` line naming the key.

A ``preset:`` entry in the ``unet`` or ``vae`` section loads ``hpc_seaice/presets/<preset>.yaml``
(shipped inside the package, so an installed package finds them wherever it runs) first and lets
the section's other keys override it, so the paper and demo networks are named once.
"""

from __future__ import annotations

import copy
import math
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from hpc_seaice.errors import UserError
from hpc_seaice.fileio import atomic_write

PRESET_DIR = Path(__file__).resolve().parent / "presets"  # network presets, package data


def _finite_number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string: take it as the number the user meant.

    nan and inf are refused here, before any range check sees them.
    """
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "expected a finite number")
    return value


# A finite float that also accepts numeric strings.
Number = Annotated[float, BeforeValidator(_finite_number)]


class Section(BaseModel):
    """A config section: strict types, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


# Types of the ranges that recur: a positive count, a width, a share in [0, 1).
Count = Annotated[int, Field(ge=1)]
Share = Annotated[float, BeforeValidator(_finite_number), Field(ge=0, lt=1)]
MAX_BATCH = 1 << 20  # a global batch larger than this holds more samples than any data set in sight
MAX_WIDTH = 1 << 16  # channels, embedding widths, kernel sides: beyond this no network fits in memory

# Numeric keys without a range, each with the reason (tests/test_config_bounds.py checks every
# numeric key has a bound or an entry here).
UNBOUNDED = {
    "diffusion.gamma_min": "any log-SNR; ordered against gamma_max by a check of the section",
    "diffusion.gamma_max": "any log-SNR; ordered against gamma_min by a check of the section",
    "diffusion.sampler_gamma_min": "any log-SNR; ordered against sampler_gamma_max by a check of the section",
    "diffusion.sampler_gamma_max": "any log-SNR; ordered against sampler_gamma_min by a check of the section",
}


class RunConfig(Section):
    dir: str = "runs/default"
    keep_checkpoints: int = Field(3, ge=1, le=10**6)  # keep the latest k checkpoints
    # when `latest` is missing or fails its checks: "" = refuse (one line naming the candidates),
    # "auto" = the newest earlier checkpoint that passes them, or a checkpoint (step_300, step_00000300)
    fallback_checkpoint: str = ""
    # start although other users can write the run folder (they could run code through its pickles)
    allow_shared_dir: bool = False


class DataConfig(Section):
    path: str = ""  # sharded dataset folder (fields or latents)
    train_split: str = "train"
    val_split: str = "validation"
    num_workers: int = Field(2, ge=0, le=256)
    prefetch_factor: int = Field(2, ge=1, le=64)
    in_memory: bool = False  # train: read the training split once into shared memory, then batches are gathers
    verify_hashes: bool = False  # train/encode start: also check every shard's sha256 (reads all data)


def preset_names() -> list[str]:
    """The network presets the package ships (``preset:`` values), sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _load_preset(section: str, name: Any) -> dict[str, Any]:
    path = PRESET_DIR / f"{name}.yaml"
    if not isinstance(name, str) or not path.is_file():
        known = preset_names()
        raise UserError(f"config key '{section}.preset': unknown preset {name!r} (known: {known})")
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a preset must be a mapping of {section} keys")
    return data


def _with_legacy_layout(data: dict[str, Any], old_keys: frozenset[str], legacy: dict[str, Any]) -> dict[str, Any]:
    """A network section of an old run's resolved config.yaml keeps the layout that run trained.

    A run writes its config with every key; one that holds every key of the first release but
    none of the layout keys was written before they existed, so its checkpoints have no mask
    channel and transposed-convolution up-sampling. New configs (a preset plus a few keys) get
    the current defaults.
    """
    if old_keys <= set(data) and not set(legacy) & set(data):
        return {**data, **legacy}
    return data


class PresetSection(Section):
    """A network section whose ``preset`` names a file of defaults in :data:`PRESET_DIR`.

    ``_legacy_keys``/``_legacy_layout``: every key the section had in the first release, and the
    layout values that rebuild the networks of runs written then (see :func:`_with_legacy_layout`).
    """

    _legacy_keys: ClassVar[frozenset[str]] = frozenset()
    _legacy_layout: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        if (info.context or {}).get("run_config"):  # only a run's own config.yaml can be an old run's
            data = _with_legacy_layout(data, cls._legacy_keys, cls._legacy_layout)
        if data.get("preset"):
            section = "unet" if cls is UNetConfig else "vae"
            return {**_load_preset(section, data["preset"]), **data}
        return data


class UNetConfig(PresetSection):
    """The one denoiser family, used in data space and latent space."""

    preset: str = ""
    in_channels: int = Field(5, ge=1, le=MAX_WIDTH)
    base_channels: int = Field(64, ge=1, le=MAX_WIDTH)
    channel_mult: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = Field(
        default_factory=lambda: [1, 2, 4, 8], min_length=1, max_length=10
    )
    blocks_per_level: int = Field(2, ge=1, le=64)
    block: Literal["convnext", "resnet"] = "convnext"
    bottleneck_blocks: int = Field(2, ge=0, le=64)  # transformer blocks at the lowest resolution
    attention_max_side: int = Field(32, ge=0, le=MAX_WIDTH)  # self-attention only where H, W <= this
    heads: int = Field(8, ge=1, le=1024)
    embedding_dim: int = Field(256, ge=2, le=MAX_WIDTH)
    mlp_ratio: int = Field(4, ge=1, le=64)  # hidden width of the block and transformer MLPs, in multiples of the width
    kernel_size: int = Field(7, ge=1, le=31)  # depthwise kernel of the ConvNeXt blocks (odd; 3 is much faster on CPU)
    dropout: Share = 0.0
    channels_last: bool = False
    compile: bool = False
    mask_channel: bool = True  # land-sea mask (ocean fraction on a latent grid) as an extra input channel
    cond_channels: int = Field(
        0, ge=0, le=MAX_WIDTH
    )  # conditioning channels beside the input (a refiner's decoded field)
    upsample: Literal["nearest", "transposed"] = "nearest"  # x2 then a separable 3x3 conv | 2x2 stride 2
    position: Literal["sincos", "none"] = "sincos"  # position features at the bottleneck

    _legacy_keys = frozenset(
        "in_channels base_channels channel_mult blocks_per_level bottleneck_blocks attention_max_side "
        "heads embedding_dim dropout channels_last compile".split()
    )
    _legacy_layout = {"mask_channel": False, "upsample": "transposed", "position": "none"}

    @model_validator(mode="after")
    def _shapes_fit(self) -> UNetConfig:
        width = self.base_channels * self.channel_mult[-1]
        if self.bottleneck_blocks and width % self.heads:
            raise PydanticCustomError(
                "unet_heads", f"heads={self.heads} must divide the bottleneck width {width} (base_channels x last mult)"
            )
        if self.embedding_dim % 2:
            raise PydanticCustomError("unet_embedding", f"embedding_dim={self.embedding_dim} must be even (sin/cos)")
        if self.kernel_size % 2 == 0:
            raise PydanticCustomError("unet_kernel", f"kernel_size={self.kernel_size} must be odd")
        return self


class VAEConfig(PresetSection):
    preset: str = ""
    in_channels: int = Field(5, ge=1, le=MAX_WIDTH)
    latent_channels: int = Field(16, ge=1, le=MAX_WIDTH)
    base_channels: int = Field(32, ge=1, le=MAX_WIDTH)
    channel_mult: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = Field(
        default_factory=lambda: [1, 2, 4, 4], min_length=1, max_length=10
    )  # 3 downsamples = 8x
    blocks_per_level: int = Field(1, ge=1, le=64)
    block: Literal["resnet", "convnext"] = "resnet"  # no FiLM in the VAE
    decoder: Literal["censored", "gaussian"] = "censored"
    beta: Number = Field(1e-4, ge=0)  # weight of the KL term (per latent element, like the NLL per value)
    sigma_init: Number = Field(0.5, gt=0, le=1e3)  # initial decoder scale per variable, in normalised units
    decoder_arch: Literal["conv", "light"] = "conv"  # conv (mirror of the encoder) | light (models/light_decoder.py)
    # light: widths on the latent grid and on the next one or two (each 2x finer)
    light_channels: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = Field(
        default_factory=lambda: [128, 48], min_length=1, max_length=3
    )
    refine_channels: int = Field(
        16, ge=0, le=MAX_WIDTH
    )  # light: hidden width of the full-resolution refinement (0 = none)
    frozen_encoder: str = ""  # an autoencoder run: train only the decoder, its encoder loaded and frozen
    channels_last: bool = False
    compile: bool = False
    mask_channel: bool = True  # encoder and decoder see the land-sea mask as an extra input channel

    _legacy_keys = frozenset(
        "in_channels latent_channels base_channels channel_mult blocks_per_level decoder beta "
        "channels_last compile".split()
    )
    _legacy_layout = {"mask_channel": False}


class DiffusionConfig(Section):
    gamma_min: Number = -20.0  # training log-SNR range
    gamma_max: Number = 20.0
    schedule: Literal["adaptive", "cosine"] = "adaptive"  # adaptive (Kingma & Gao 2023) | cosine (fixed)
    adaptive_bins: int = Field(100, ge=2, le=100_000)
    adaptive_decay: Share = 0.999
    # Heun steps: within 5 % of the data's std in every principal direction (docs/sampler.md)
    sampler_steps: int = Field(30, ge=1, le=100_000)
    sampler_gamma_min: Number = -14.0  # sampling log-SNR range: sigma_ve = exp(-gamma / 2); e^7 >= 3 x PC1 std
    sampler_gamma_max: Number = 15.0
    sampler_spacing: Literal["log-snr", "edm"] = "log-snr"  # noise levels equal in gamma | Karras et al.'s rho
    sampler_rho: Number = Field(7.0, gt=0, le=100)  # the edm spacing's rho (unused by log-snr)
    latent_posterior: Literal["sample", "mean"] = "sample"  # latent runs train on z = mu + sigma * eps, or on mu

    @model_validator(mode="after")
    def _ranges_ordered(self) -> DiffusionConfig:
        for low, high in (("gamma_min", "gamma_max"), ("sampler_gamma_min", "sampler_gamma_max")):
            if not getattr(self, low) < getattr(self, high):
                raise PydanticCustomError(
                    "diffusion_range", f"{low}={getattr(self, low)} must be below {high}={getattr(self, high)}"
                )
        return self


class RefineConfig(Section):
    """``stage: refiner``: a data-space model of what a latent run's VAE loses (docs/refiner.md)."""

    latent_run: str = ""  # the latent diffusion run whose decoded samples it refines (its VAE makes the pairs)
    latent_checkpoint: str = "latest"  # that run's checkpoint sampled under the refiner
    scale_states: int = Field(32, ge=1, le=100_000)  # training states that measure the residual's std per channel


class OptimConfig(Section):
    lr: Number = Field(2e-4, ge=0, le=10)
    min_lr: Number = Field(1e-6, ge=0, le=10)
    weight_decay: Number = Field(0.01, ge=0, le=10)
    betas: list[Share] = Field(default_factory=lambda: [0.9, 0.99], min_length=2, max_length=2)
    warmup_steps: int = Field(5000, ge=0, le=10**9)
    grad_clip: Number = Field(1.0, ge=0, le=1e6)
    ema_decay: Number = Field(0.999, ge=0, le=1)


class TrainConfig(Section):
    max_steps: int = Field(1000, ge=0, le=10**9)
    batch_size: int = Field(8, ge=1, le=MAX_BATCH)  # global batch = micro_batch_size x grad_accum x world size
    micro_batch_size: int = Field(0, ge=0, le=MAX_BATCH)  # per rank; 0 = batch_size / (world size x grad_accum)
    grad_accum: int = Field(1, ge=1, le=MAX_BATCH)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    log_every: int = Field(10, ge=1, le=10**9)
    checkpoint_every: int = Field(100, ge=1, le=10**9)
    val_every: int = Field(100, ge=0, le=10**9)
    val_batches: int = Field(4, ge=1, le=10**6)
    image_every: int = Field(0, ge=0, le=10**9)  # 0 = with validation
    max_nonfinite_steps: int = Field(5, ge=1, le=10**6)  # stop after this many non-finite steps in a row
    progress: bool = True


class EngineConfig(Section):
    name: Literal["ddp", "deepspeed"] = "ddp"
    zero_stage: Literal[0, 1, 2, 3] = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    deepspeed_config: str = ""  # optional user DeepSpeed JSON, merged under ours
    timeout_s: Number = Field(600.0, ge=1, le=7 * 86400)  # collective timeout; a lost peer fails every rank within it


class ExperimentConfig(Section):
    stage: Literal["autoencoder", "diffusion", "refiner"] = "diffusion"
    run: RunConfig = Field(default_factory=RunConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    unet: UNetConfig = Field(default_factory=UNetConfig)
    vae: VAEConfig = Field(default_factory=VAEConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)


# --- one-line errors -------------------------------------------------------------------------

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true/false",
    "bool_parsing": "true/false",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a number",
    "string_type": "a string",
    "list_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dict_type": "a mapping",
}
_BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _key(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _field(loc: tuple[int | str, ...]) -> tuple[type[BaseModel], Any]:
    """The model class and FieldInfo that ``loc`` (names only, list indices skipped) ends in."""
    model: type[BaseModel] = ExperimentConfig
    info: Any = None
    for part in (p for p in loc if isinstance(p, str)):
        info = model.model_fields[part]
        hint = info.annotation
        if isinstance(hint, type) and issubclass(hint, BaseModel):
            model = hint
    return model, info


def _message(error: ErrorDetails) -> str:
    """One line for the first validation error, in the words the CLI has always used."""
    loc, kind, value = error["loc"], error["type"], error.get("input")
    key = _key(loc)
    if kind == "extra_forbidden":
        model, _ = _field(loc[:-1])
        return f"unknown config key '{key}' (known: {', '.join(sorted(model.model_fields))})"
    if kind == "literal_error":
        _, info = _field(loc)
        return f"config key '{key}': {value!r} is not one of {typing.get_args(info.annotation)}"
    if kind in _BOUND_ERRORS:  # the bound that was crossed, as the field states it
        ops = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
        return f"config key '{key}': {value!r} must be {ops[kind]} {next(iter((error.get('ctx') or {}).values()), '?')}"
    if kind in _EXPECTED:
        return f"config key '{key}': expected {_EXPECTED[kind]}, got {value!r}"
    if kind in ("too_short", "too_long"):
        return f"config key '{key}': {error['msg'].lower()}, got {value!r}"
    if kind.startswith(("unet_", "diffusion_")):
        return f"config key '{key}.{error['msg'].split('=')[0]}': {error['msg']}"
    return f"config key '{key}': {error['msg']}"


def config_from_dict(data: dict[str, Any], run_config: bool = False) -> ExperimentConfig:
    """Validate a config mapping; ``run_config``: it is a run folder's own resolved ``config.yaml``,
    where a network section without the layout keys means a run made before they existed."""
    try:
        return ExperimentConfig.model_validate(data or {}, context={"run_config": run_config})
    except ValidationError as exc:
        raise UserError(_message(exc.errors()[0])) from None


# --- files and overrides ---------------------------------------------------------------------


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


class _DuplicateKey(ValueError):
    pass


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (YAML keeps the last one
    silently: a section written twice would drop the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(
                    f"key {key!r} appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1}); "
                    "YAML would keep only the second"
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """A YAML file read with :class:`UniqueKeyLoader`; one-line UserErrors naming the file."""
    try:
        return yaml.load(path.read_text(), Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise UserError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a YAML experiment config, apply dotted overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping")
    run_config = path.name == "config.yaml" and (path.parent / "checkpoints").is_dir()
    return config_from_dict(apply_overrides(data, overrides or []), run_config=run_config)


def _absolute(key: str, path: str) -> str:
    try:
        return str(Path(path).expanduser().resolve())
    except (OSError, RuntimeError) as exc:  # a symlink loop: RuntimeError before Python 3.13
        raise UserError(
            f"config key '{key}': {path} cannot be resolved ({getattr(exc, 'strerror', None) or exc})"
        ) from None


def with_absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """A copy whose folder and file paths are absolute, so a run folder works from any directory."""
    cfg = copy.deepcopy(cfg)
    cfg.run.dir = _absolute("run.dir", cfg.run.dir)
    if cfg.data.path:
        cfg.data.path = _absolute("data.path", cfg.data.path)
    if cfg.vae.frozen_encoder:
        cfg.vae.frozen_encoder = _absolute("vae.frozen_encoder", cfg.vae.frozen_encoder)
    if cfg.refine.latent_run:
        cfg.refine.latent_run = _absolute("refine.latent_run", cfg.refine.latent_run)
    if cfg.engine.deepspeed_config:
        cfg.engine.deepspeed_config = _absolute("engine.deepspeed_config", cfg.engine.deepspeed_config)
    return cfg


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    return cfg.model_dump()


HISTORY_HEADER = "# changed on resume (step: key old -> new):"


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out |= _flat(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key old -> new`` for every key whose value differs between two config mappings."""
    a, b = _flat(old), _flat(new)
    return [
        f"{key} {a.get(key)!r} -> {b.get(key)!r}" for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key)
    ]


def dump_config(cfg: BaseModel, path: str | Path, step: int = 0) -> list[str]:
    """Write the fully resolved config as YAML (atomically), keeping the history of changes.

    A run resumed at ``step`` with other values than its ``config.yaml`` held: the changes are
    returned and appended to the comment lines at the end of the file, so the file says which
    values held from which step. Returns the changes of this write (empty for a fresh run).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = config_to_dict(cfg)
    history: list[str] = []
    changes: list[str] = []
    if step > 0 and path.is_file():
        text = path.read_text()
        history = [line for line in text.splitlines() if line.startswith("# step ")]
        try:
            old = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            old = {}
        changes = config_changes(old, new) if isinstance(old, dict) else []
        history += [f"# step {step}: {change}" for change in changes]
    body = yaml.safe_dump(new, sort_keys=False)
    if history:
        body += "\n".join([HISTORY_HEADER, *history]) + "\n"
    atomic_write(path, body)
    return changes
