"""Every config value is validated at ``train`` time, and a resume may not change what comes next.

Before: ``unet.heads=0``, ``optim.betas=[1.5,2]``, ``diffusion.adaptive_bins=0``,
``adaptive_decay=5``, ``sampler_rho=0``, ``train.batch_size=1e9``, ``unet.embedding_dim=-3`` and a
symlink loop as ``data.path`` or ``run.dir`` were tracebacks (some only at ``sample``); a YAML
section written twice silently dropped the first; a resume with another ``train.seed`` repeated
and skipped samples and rewrote ``config.yaml`` as if the whole run had used it.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml
from helpers import tiny_diffusion_config, write_config
from pydantic import BaseModel

from hpc_seaice.cli import main
from hpc_seaice.config import UNBOUNDED, ExperimentConfig, config_from_dict, load_config
from hpc_seaice.errors import UserError


def _numeric_keys() -> list[tuple[str, type, typing.Any]]:
    """(dotted key, int or float, FieldInfo or the list item's metadata) of every numeric key."""
    found = []
    for section, info in ExperimentConfig.model_fields.items():
        model = info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        for name, field in model.model_fields.items():
            kind, metadata = field.annotation, field.metadata
            if typing.get_origin(kind) is list:
                item = typing.get_args(kind)[0]
                metadata = list(getattr(item, "__metadata__", ()))
                inner = typing.get_args(item)[0] if typing.get_origin(item) is typing.Annotated else item
                metadata += [m for entry in metadata for m in getattr(entry, "metadata", ())]
                kind = inner
            if typing.get_origin(kind) is typing.Annotated:
                kind = typing.get_args(kind)[0]
            if kind in (int, float) and kind is not bool:
                found.append((f"{section}.{name}", kind, metadata))
    return found


def _bounds(metadata) -> tuple[float | None, float | None]:
    low = high = None
    for meta in metadata:
        for attr in ("ge", "gt"):
            if getattr(meta, attr, None) is not None:
                low = getattr(meta, attr)
        for attr in ("le", "lt"):
            if getattr(meta, attr, None) is not None:
                high = getattr(meta, attr)
    return low, high


NUMERIC = _numeric_keys()


def test_every_numeric_key_has_a_bound_or_a_stated_reason():
    assert len(NUMERIC) > 40  # the walk finds the keys (ints, floats, lists of them)
    missing = [key for key, _, meta in NUMERIC if _bounds(meta) == (None, None) and key not in UNBOUNDED]
    assert not missing, f"numeric config keys without a range or a reason in config.UNBOUNDED: {missing}"
    assert set(UNBOUNDED) <= {key for key, _, _ in NUMERIC}  # no stale reason


def _with(key: str, value) -> dict:
    section, name = key.split(".")
    default = getattr(getattr(ExperimentConfig(), section), name)
    return {section: {name: [value] * len(default) if isinstance(default, list) else value}}


@pytest.mark.parametrize(("key", "kind", "metadata"), NUMERIC, ids=[k for k, _, _ in NUMERIC])
def test_out_of_range_values_are_one_line_naming_the_key(key, kind, metadata):
    """Zero, negative, huge and wrong-type values: each is accepted or refused in one line naming the key;
    a value outside the key's range is always refused."""
    low, high = _bounds(metadata)
    for value in (0, -1, 10**12, -(10**12), "abc", [1], 0.5 if kind is int else True):
        try:
            config_from_dict(_with(key, value))
        except UserError as exc:
            text = str(exc)
            assert "\n" not in text and key.split(".")[1] in text, text
            continue
        assert not isinstance(value, (str, list)), f"{key}={value!r} accepted"
        assert low is None or value >= low, f"{key}={value!r} accepted below {low}"
        assert high is None or value <= high, f"{key}={value!r} accepted above {high}"


CASES = [
    ("unet.heads=0", "config key 'unet.heads': 0 must be >= 1"),
    ("optim.betas=[1.5,2]", "config key 'optim.betas[0]': 1.5 must be < 1"),
    ("diffusion.adaptive_bins=0", "config key 'diffusion.adaptive_bins': 0 must be >= 2"),
    ("diffusion.adaptive_decay=5", "config key 'diffusion.adaptive_decay': 5 must be < 1"),
    ("diffusion.sampler_rho=0", "config key 'diffusion.sampler_rho': 0 must be > 0"),
    ("train.batch_size=1e9", "config key 'train.batch_size': expected an integer, got '1e9'"),
    ("train.batch_size=1000000000", "config key 'train.batch_size': 1000000000 must be <= 1048576"),
    ("unet.embedding_dim=-3", "config key 'unet.embedding_dim': -3 must be >= 2"),
    ("unet.heads=7", "config key 'unet.heads': heads=7 must divide the bottleneck width"),
    ("diffusion.sampler_gamma_min=20", "sampler_gamma_min=20.0 must be below sampler_gamma_max=15.0"),
]


@pytest.mark.parametrize(("override", "needle"), CASES, ids=[c[0] for c in CASES])
def test_train_refuses_in_one_line(tmp_path, capsys, override, needle):
    config = write_config(tmp_path / "c.yaml", tiny_diffusion_config(tmp_path / "data", tmp_path / "run"))
    code = main(["train", str(config), override])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and needle in err[0], err


@pytest.mark.parametrize("key", ["data.path", "run.dir"])
def test_a_symlink_loop_as_a_path_is_one_line(tmp_path, capsys, key):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    config = write_config(tmp_path / "c.yaml", tiny_diffusion_config(tmp_path / "data", tmp_path / "run"))
    code = main(["train", str(config), f"{key}={loop}"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and f"config key '{key}': {loop} cannot be resolved" in err[0], err


def test_a_section_written_twice_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  max_steps: 5\nunet:\n  preset: tiny-unet\ntrain:\n  seed: 3\n")
    with pytest.raises(UserError, match=r"c.yaml: key 'train' appears twice \(lines 1 and 5\)"):
        load_config(path)
    path.write_text("train:\n  seed: 1\n  seed: 2\n")
    with pytest.raises(UserError, match="key 'seed' appears twice"):
        load_config(path)


def test_resume_refuses_another_seed_and_records_harmless_changes(tiny_dataset, tmp_path, capsys, one_torch_thread):
    run = tmp_path / "run"
    config = write_config(
        tmp_path / "c.yaml", tiny_diffusion_config(tiny_dataset, run, train={"max_steps": 2, "checkpoint_every": 2})
    )
    assert main(["train", str(config)]) == 0
    capsys.readouterr()
    before = (run / "config.yaml").read_text()
    code = main(["train", str(config), "train.max_steps=3", "train.seed=2"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert "config key 'train.seed' is 2, but checkpoint" in err[0] and "set train.seed=1 to resume" in err[0]
    assert (run / "config.yaml").read_text() == before  # not rewritten as if the run had used seed 2

    assert main(["train", str(config), "train.max_steps=3", "optim.lr=0.0005"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(err) == 1 and "resuming at step 2 with changed config" in err[0], err
    assert "optim.lr 0.001 -> 0.0005" in err[0] and "train.max_steps 2 -> 3" in err[0]
    text = (run / "config.yaml").read_text()
    assert "# step 2: optim.lr 0.001 -> 0.0005" in text and "# step 2: train.max_steps 2 -> 3" in text
    assert yaml.safe_load(text)["optim"]["lr"] == 0.0005
    assert load_config(Path(run / "config.yaml")).train.seed == 1  # the comments do not disturb reading it
