"""Decoder quality: the light (sub-pixel) VAE decoder against the mirror (conv) decoder, same encoder.

    python -m benchmarks.decoder_quality                    # 64 x 64 synthetic data, 400 steps per run
    python -m benchmarks.decoder_quality --grid 128 --steps 1500 --work /tmp/dq

Why: the light decoder makes a latent sample cheap; it must not make it worse. Three runs of
``hpc-seaice train`` on one synthetic data set (``configs/demo/autoencoder.yaml``, demo-vae):

- ``conv``: encoder and mirror decoder trained together (``--steps``);
- ``conv, frozen encoder``: a fresh mirror decoder trained against ``conv``'s frozen encoder;
- ``light, frozen encoder``: the light decoder trained the same way (``vae.frozen_encoder``).

The last two differ only in the decoder's architecture (same encoder, same latents, same
decoder training budget): that pair is the comparison. Every test state is reconstructed
deterministically (encoder mean, clamp(mu)); scores against the true states: RMSE per variable
(ocean cells), the small-scale thickness PSD log-ratio (Hann-windowed isotropic spectrum over
the central box, mean log10 ratio over the upper half of the wavenumbers; 0 = as much
small-scale energy as the truth, < 0 = smoother), the marginal-ice-zone area error (mean
|area - true area| / mean true area) and the plateau shares (ocean cells with sic exactly 0 or
exactly 1, and sit exactly 0), as absolute differences from the truth.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import REPO_ROOT, markdown_table, results_dir, write_report
from hpc_seaice.data.dataset import ShardedDataset
from hpc_seaice.data.variables import VARIABLES
from hpc_seaice.evaluation.metrics import miz_area, rmse
from hpc_seaice.evaluation.spectra import central_arctic_box, isotropic_psd
from hpc_seaice.inference.loading import load_inference_model

CH = {name: i for i, name in enumerate(VARIABLES)}
CONFIG = REPO_ROOT / "configs" / "demo" / "autoencoder.yaml"


def runs(work: Path, steps: int, light_channels: str) -> dict[str, list[str]]:
    """Run name -> overrides of ``configs/demo/autoencoder.yaml`` (trained in this order)."""
    conv = work / "runs" / "conv"
    common = [f"data.path={work / 'data'}", f"train.max_steps={steps}", "train.val_every=0", "train.progress=false"]
    common += [f"train.checkpoint_every={steps}", "data.num_workers=0"]
    return {
        "conv": [*common, f"run.dir={conv}"],
        "conv, frozen encoder": [*common, f"run.dir={work / 'runs' / 'conv-frozen'}", f"vae.frozen_encoder={conv}"],
        "light, frozen encoder": [
            *common,
            f"run.dir={work / 'runs' / 'light-frozen'}",
            f"vae.frozen_encoder={conv}",
            "vae.decoder_arch=light",
            f"vae.light_channels={light_channels}",
        ],
    }


def run_dir_of(overrides: list[str]) -> Path:
    return Path(next(o for o in overrides if o.startswith("run.dir=")).split("=", 1)[1])


def reconstruct(run_dir: Path, states: np.ndarray, mask: np.ndarray, batch: int = 16) -> np.ndarray:
    """Deterministic reconstructions (encoder mean, clamp(mu), land 0) of physical ``states``."""
    vae = load_inference_model(run_dir).model
    m = torch.from_numpy(mask.astype(np.float32))
    out = []
    with torch.no_grad():
        for lo in range(0, len(states), batch):
            x = torch.from_numpy(states[lo : lo + batch])
            mean, _ = vae.encode(vae.normalize(x) * m)
            out.append(vae.decode(mean, mask=m).numpy())
    return np.concatenate(out)


def small_scale_log_ratio(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Mean log10(PSD / true PSD) of thickness over the upper half of the wavenumbers (windowed estimator)."""
    box = central_arctic_box(mask)
    p = isotropic_psd(pred[:, CH["sit"]], mask=mask, box=box).psd
    t = isotropic_psd(truth[:, CH["sit"]], mask=mask, box=box).psd
    upper = slice(len(t) // 2, None)
    ok = (p[upper] > 0) & (t[upper] > 0)
    return float(np.mean(np.log10(p[upper][ok] / t[upper][ok])))


def plateau_shares(x: np.ndarray, ocean: np.ndarray) -> dict[str, float]:
    sic, sit = x[:, CH["sic"]][:, ocean], x[:, CH["sit"]][:, ocean]
    shares = {"sic == 0": sic == 0, "sic == 1": sic == 1, "sit == 0": sit == 0}
    return {name: float(hit.mean()) for name, hit in shares.items()}


def scores(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    ocean = mask > 0.5
    err = np.sqrt((rmse(pred, truth, mask) ** 2).mean(axis=0))  # [N, C] -> [C], over all states
    miz_pred, miz_true = miz_area(pred[:, CH["sic"]], mask, 1.0), miz_area(truth[:, CH["sic"]], mask, 1.0)
    shares, true_shares = plateau_shares(pred, ocean), plateau_shares(truth, ocean)
    return {
        "rmse": {var: float(err[c]) for c, var in enumerate(VARIABLES)},
        "psd_small_scale_log10_ratio": small_scale_log_ratio(pred, truth, mask),
        "miz_area_error": float(np.abs(miz_pred - miz_true).mean() / max(miz_true.mean(), 1e-12)),
        "plateau_shares": shares,
        "plateau_share_error": {k: abs(shares[k] - true_shares[k]) for k in shares},
    }


def train(name: str, overrides: list[str], log_dir: Path) -> float:
    run_dir = run_dir_of(overrides)
    t0 = time.perf_counter()
    if not (run_dir / "checkpoints" / "latest").exists():
        print(f"training {name}: {' '.join(overrides)}", flush=True)
        cmd = [sys.executable, "-m", "hpc_seaice", "train", str(CONFIG), *overrides]
        with open(log_dir / f"{run_dir.name}.log", "w") as log:
            subprocess.run(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.decoder_quality", description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=int, default=64, help="synthetic grid side (default 64)")
    p.add_argument("--steps", type=int, default=400, help="training steps of each run (default 400)")
    p.add_argument("--light-channels", default="[64,32]", help="vae.light_channels of the light run")
    p.add_argument("--work", default="", help="folder for the data set and runs (default: a folder under /tmp)")
    p.add_argument("--out", default="", help="results folder (default benchmarks/results)")
    p.add_argument("--name", default="decoder_quality", help="result file name")
    args = p.parse_args(argv)
    work = Path(args.work or f"/tmp/hpc-seaice-decoder-quality-{args.grid}-{args.steps}")
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "data" / "manifest.json").is_file():
        synth = ["data", "synth", "--out", str(work / "data"), "--grid", str(args.grid), "--freq", "5D"]
        subprocess.run([sys.executable, "-m", "hpc_seaice", *synth, "--overwrite"], cwd=REPO_ROOT, check=True)
    plan = runs(work, args.steps, args.light_channels)
    seconds = {name: train(name, overrides, work) for name, overrides in plan.items()}
    test = ShardedDataset(work / "data", split="test", normalize=False)
    truth = np.stack([test.raw(i) for i in range(len(test))])
    mask = test.static.mask.astype(np.float64)
    rows, summary = [], {}
    for name, overrides in plan.items():
        s = scores(reconstruct(run_dir_of(overrides), truth, mask), truth, mask)
        summary[name] = {**s, "train_s": seconds[name]}
        rows.append(
            {
                "decoder": name,
                **{f"RMSE {v}": f"{s['rmse'][v]:.4g}" for v in VARIABLES},
                "small-scale PSD log10 ratio": f"{s['psd_small_scale_log10_ratio']:+.3f}",
                "MIZ-area error": f"{100 * s['miz_area_error']:.1f}%",
                **{f"share {k} error": f"{100 * e:.2f} pt" for k, e in s["plateau_share_error"].items()},
            }
        )
    light, conv = summary["light, frozen encoder"], summary["conv, frozen encoder"]
    relative = {f"rmse {v}": light["rmse"][v] / conv["rmse"][v] - 1 for v in VARIABLES}
    relative["miz_area_error"] = light["miz_area_error"] / max(conv["miz_area_error"], 1e-12) - 1
    settings = {"grid": args.grid, "steps": args.steps, "config": str(CONFIG.relative_to(REPO_ROOT)),
                "light_channels": args.light_channels, "test_states": len(truth), "work": str(work)}  # fmt: skip
    notes = (
        "Light vs conv (both decoders trained against the same frozen encoder), relative change: "
        + ", ".join(f"{k} {100 * v:+.1f}%" for k, v in relative.items())
        + ". Reconstructions of the test split, deterministic. See the module docstring for the scores."
    )
    out = Path(args.out) if args.out else results_dir()
    header = (
        f"Synthetic {args.grid} x {args.grid} data, {len(truth)} test states; demo-vae encoder trained {args.steps} "
        f"steps ('conv'), then each decoder trained {args.steps} steps against that frozen encoder."
    )
    json_path, md_path = write_report(
        args.name,
        rows,
        settings=settings,
        summary={"runs": summary, "light_vs_conv_relative": relative},
        header_text=header,
        notes=notes,
        out_dir=out,
    )
    print(markdown_table(rows))
    print(notes)
    print(f"written {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
