"""Decoder quality: the light (sub-pixel) VAE decoder against the mirror (conv) decoder, same encoder.

    python -m benchmarks.decoder_quality                    # 64 x 64 synthetic data, 400 steps per run
    python -m benchmarks.decoder_quality --grid 128 --steps 1500 --seeds 0,1,2   # docs/performance.md (128 x 128)
    python -m benchmarks.decoder_quality --grid 128 --steps 1500 --work /tmp/dq --lrs 0.004

Why: the light decoder makes a latent sample cheap; it must not make it worse. Runs of
``hpc-seaice train`` on one synthetic data set (``configs/demo/autoencoder.yaml``, demo-vae):

- ``conv``: encoder and mirror decoder trained together (``--steps``, the config's learning rate);
- ``conv, frozen encoder, lr X``: a fresh mirror decoder trained against ``conv``'s frozen encoder;
- ``light, frozen encoder, lr X``: the light decoder trained the same way (``vae.frozen_encoder``);
  by default with the ``paper-vae`` design at demo widths (levels 64, 32, 16; refinement 16).

The frozen-encoder pairs differ only in the decoder's architecture (same encoder, same latents,
same decoder training budget and learning rate): each pair is one comparison. Both decoders are
trained at every ``--lrs`` entry because they need not share the best rate: at the joint VAE's
1e-3 the light decoder was measured to lag far more than at 4e-3 or 8e-3 (docs/performance.md). Every test
state is reconstructed deterministically (encoder mean, clamp(mu)); scores against the true states:
RMSE per variable (ocean cells), the small-scale thickness PSD log-ratio (Hann-windowed isotropic
spectrum over the central box, mean log10 ratio over the upper half of the wavenumbers; 0 = as
much small-scale energy as the truth, < 0 = smoother), the marginal-ice-zone area error (mean
|area - true area| / mean true area) and the plateau shares (ocean cells with sit exactly 0,
sic exactly 0 or 1, damage exactly 1: ``evaluation.plateaus``), as absolute differences from the truth.

Each frozen-encoder decoder is trained once per ``--seeds`` entry; the table gives mean ± std
over the seeds, and the notes say per learning rate and score whether the light decoder is
within 5 % of the mirror one or better, and whether the difference exceeds twice its standard error.
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

from benchmarks.common import (
    REPO_ROOT,
    add_output_options,
    comma_list,
    markdown_table,
    non_negative_int,
    out_dir_for,
    positive_float,
    write_report,
)
from hpc_seaice.data.format.variables import VARIABLES
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.evaluation.metrics import miz_area, rmse
from hpc_seaice.evaluation.plateaus import plateau_shares
from hpc_seaice.evaluation.spectra import central_arctic_box, isotropic_psd, log_ratio
from hpc_seaice.inference.loading import load_inference_model

CH = {name: i for i, name in enumerate(VARIABLES)}
CONFIG = REPO_ROOT / "configs" / "demo" / "autoencoder.yaml"


def runs(
    work: Path, steps: int, light: list[str], seeds: list[int], lrs: list[float]
) -> dict[str, dict[int, list[str]]]:
    """Run name -> seed -> overrides of ``configs/demo/autoencoder.yaml`` (trained in this order).

    The joint run (``conv``) is trained once (seed 0, the config's learning rate): its encoder is
    the one every decoder run sees. Each frozen-encoder decoder is trained once per seed
    (``train.seed``) and per learning rate (``optim.lr``), both decoders at every rate.
    """
    conv = work / "runs" / "conv"
    common = [f"data.path={work / 'data'}", f"train.max_steps={steps}", "train.val_every=0", "train.progress=false"]
    common += [f"train.checkpoint_every={steps}", "data.num_workers=0"]
    frozen = [f"vae.frozen_encoder={conv}"]

    def per_seed(name: str, lr: float, extra: list[str]) -> dict[int, list[str]]:
        folder = f"{name}-lr{rate_text(lr)}"
        return {
            s: [
                *common,
                *extra,
                f"optim.lr={rate_text(lr)}",
                f"train.seed={s}",
                f"run.dir={work / 'runs' / f'{folder}-seed{s}'}",
            ]
            for s in seeds
        }

    plan = {"conv": {0: [*common, f"run.dir={conv}"]}}
    for lr in lrs:
        plan[decoder_name("conv", lr)] = per_seed("conv-frozen", lr, frozen)
        plan[decoder_name("light", lr)] = per_seed("light-frozen", lr, [*frozen, "vae.decoder_arch=light", *light])
    return plan


def rate_text(lr: float) -> str:
    """A learning rate as it names folders, rows and notes: the shortest text that reads back as ``lr``.

    Not ``:g``: two rates the same to six digits would share one name, and one would silently
    replace the other's runs and verdict.
    """
    return repr(float(lr))


def decoder_name(arch: str, lr: float) -> str:
    """The table's name of a frozen-encoder decoder run: architecture and learning rate."""
    return f"{arch}, frozen encoder, lr {rate_text(lr)}"


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
    return log_ratio(p, t, np.arange(len(t)) >= len(t) // 2)


def scores(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    err = np.sqrt((rmse(pred, truth, mask) ** 2).mean(axis=0))  # [N, C] -> [C], over all states
    miz_pred, miz_true = miz_area(pred[:, CH["sic"]], mask, 1.0), miz_area(truth[:, CH["sic"]], mask, 1.0)
    shares, true_shares = plateau_shares(pred, mask), plateau_shares(truth, mask)
    return {
        "rmse": {var: float(err[c]) for c, var in enumerate(VARIABLES)},
        "psd_small_scale_log10_ratio": small_scale_log_ratio(pred, truth, mask),
        "miz_area_error": float(np.abs(miz_pred - miz_true).mean() / max(miz_true.mean(), 1e-12)),
        "plateau_shares": shares,
        "plateau_share_error": {k: abs(shares[k] - true_shares[k]) for k in shares},
    }


def train(name: str, overrides: list[str], log_dir: Path) -> float | None:
    """Train one run; its wall time in seconds, or None when a finished run in ``--work`` is reused."""
    run_dir = run_dir_of(overrides)
    if (run_dir / "checkpoints" / "latest").exists():
        print(f"reusing {name}: {run_dir} (trained before; delete it to train again)", flush=True)
        return None
    print(f"training {name}: {' '.join(overrides)}", flush=True)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "hpc_seaice", "train", str(CONFIG), *overrides]
    with open(log_dir / f"{run_dir.name}.log", "w") as log:
        subprocess.run(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - t0


def flat(s: dict[str, Any]) -> dict[str, float]:
    """The scores of one reconstruction as one flat mapping (metric name -> value)."""
    out = {f"rmse {v}": s["rmse"][v] for v in VARIABLES}
    out["psd_small_scale_log10_ratio"] = s["psd_small_scale_log10_ratio"]
    out["miz_area_error"] = s["miz_area_error"]
    out.update({f"share {k} error": e for k, e in s["plateau_share_error"].items()})
    return out


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Metric -> mean and sample std over the seeds (std 0 for one seed)."""
    keys = per_seed[0].keys()
    arr = {k: np.array([p[k] for p in per_seed]) for k in keys}
    return {k: {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0} for k, a in arr.items()}


def fmt(stat: dict[str, float], kind: str, n: int) -> str:
    scale, unit, spec = {"pct": (100, "%", ".1f"), "pt": (100, " pt", ".2f"), "psd": (1, "", "+.3f")}.get(
        kind, (1, "", ".4g")
    )
    text = f"{scale * stat['mean']:{spec}}"
    return text + (f" ± {scale * stat['std']:{'.2g' if spec == '.4g' else spec.lstrip('+')}}" if n > 1 else "") + unit


def verdicts(
    light: dict[str, dict[str, float]], conv: dict[str, dict[str, float]], n: int
) -> dict[str, dict[str, Any]]:
    """Per metric: light against conv means, relative (errors) or absolute (PSD log-ratio), and the 5 % target.

    Error metrics (RMSE, MIZ-area error, share errors): target met when the light mean is at most
    1.05 x the conv mean. PSD log-ratio: met when light is at least as close to 0 as conv, within
    5 % of conv's |value|. ``beyond_seed_spread``: the difference of the means exceeds twice its
    standard error over the seeds (only with two or more seeds).
    """
    out = {}
    for k in conv:
        lm, cm = light[k]["mean"], conv[k]["mean"]
        se = float(np.hypot(light[k]["std"], conv[k]["std"]) / np.sqrt(n))
        if k == "psd_small_scale_log10_ratio":
            change, holds = abs(lm) - abs(cm), abs(lm) <= 1.05 * abs(cm)
        else:
            change, holds = (lm / cm - 1 if cm > 0 else float(lm > 0)), lm <= 1.05 * cm  # 0 and 0: no change
        beyond = bool(n > 1 and abs(lm - cm) > 2 * se)
        out[k] = {"light": lm, "conv": cm, "change": change, "holds": bool(holds), "beyond_seed_spread": beyond}
    return out


KIND = {"miz_area_error": "pct", "psd_small_scale_log10_ratio": "psd"}
LABEL = {"psd_small_scale_log10_ratio": "small-scale PSD log10 ratio", "miz_area_error": "MIZ-area error"}


def verdict_notes(verdict: dict[str, dict[str, Any]], n: int, lr: float) -> str:
    """One paragraph: per score the light decoder's change against conv at ``lr``, and the 5 % target."""
    changes = "; ".join(
        f"{k} {100 * v['change']:+.1f}%" if k != "psd_small_scale_log10_ratio" else f"{k} {v['change']:+.3f}"
        for k, v in verdict.items()
    )
    spread = (
        ". Differences beyond twice their standard error over the seeds: "
        + (", ".join(k for k, v in verdict.items() if v["beyond_seed_spread"]) or "none")
        if n > 1
        else ". One seed: no seed spread measured"
    )
    return (
        f"At lr {rate_text(lr)}, light vs conv (both trained against the same frozen encoder; means over {n} seed(s)); "
        f"change (relative for errors, in |log10 ratio| for the PSD) and the 5 % target: {changes}. "
        "Target (light within 5 % of conv or better) holds for: "
        + (", ".join(k for k, v in verdict.items() if v["holds"]) or "none")
        + "; does not hold in this run for: "
        + (", ".join(k for k, v in verdict.items() if not v["holds"]) or "none")
        + spread
        + "."
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.decoder_quality", description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=int, default=64, help="synthetic grid side (default 64)")
    p.add_argument("--steps", type=int, default=400, help="training steps of each run (default 400)")
    p.add_argument(
        "--seeds",
        type=comma_list(non_negative_int, "comma-separated seeds >= 0"),
        default=[0],
        help="comma-separated train.seed values of the decoder runs (default 0)",
    )
    p.add_argument(
        "--lrs",
        type=comma_list(positive_float, "comma-separated learning rates > 0"),
        default=[1e-3, 4e-3],
        help="comma-separated optim.lr values; both decoders are trained at each (default 0.001,0.004)",
    )
    p.add_argument("--light-channels", default="[64,32,16]", help="vae.light_channels of the light run")
    p.add_argument("--light-refine", type=int, default=16, help="vae.refine_channels of the light run (default 16)")
    p.add_argument("--work", default="", help="folder for the data set and runs (default: a folder under /tmp)")
    add_output_options(p, name="decoder_quality")
    args = p.parse_args(argv)
    seeds, lrs = sorted(set(args.seeds)), sorted(set(args.lrs))
    if not seeds or not lrs:
        p.error("--seeds and --lrs: give at least one value each")
    work = Path(args.work or f"/tmp/hpc-seaice-decoder-quality-{args.grid}-{args.steps}")
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "data" / "manifest.json").is_file():
        synth = ["data", "synth", "--out", str(work / "data"), "--grid", str(args.grid), "--freq", "5D"]
        subprocess.run([sys.executable, "-m", "hpc_seaice", *synth, "--overwrite"], cwd=REPO_ROOT, check=True)
    light = [f"vae.light_channels={args.light_channels}", f"vae.refine_channels={args.light_refine}"]
    plan = runs(work, args.steps, light, seeds, lrs)
    seconds = {(name, s): train(name, o, work) for name, by_seed in plan.items() for s, o in by_seed.items()}
    test = ShardedDataset(work / "data", split="test", normalize=False)
    truth = np.stack([test.raw(i) for i in range(len(test))])
    mask = test.static.mask.astype(np.float64)
    rows, summary = [], {}
    for name, by_seed in plan.items():
        per_seed = {s: scores(reconstruct(run_dir_of(o), truth, mask), truth, mask) for s, o in by_seed.items()}
        stats = aggregate([flat(v) for v in per_seed.values()])
        summary[name] = {"per_seed": per_seed, "mean_std": stats, "train_s": {s: seconds[name, s] for s in by_seed}}
        n = len(by_seed)
        rows.append(
            {
                "decoder": name,
                "seeds": n,
                **{
                    LABEL.get(k, k.replace("rmse", "RMSE")): fmt(v, KIND.get(k, "pt" if "share" in k else ""), n)
                    for k, v in stats.items()
                },
            }
        )
    n = len(seeds)
    by_rate = {
        lr: verdicts(summary[decoder_name("light", lr)]["mean_std"], summary[decoder_name("conv", lr)]["mean_std"], n)
        for lr in lrs
    }
    verdict = {f"lr {rate_text(lr)}": v for lr, v in by_rate.items()}
    settings = {
        **{k: getattr(args, k) for k in ("grid", "steps", "light_channels", "light_refine")},
        **{"seeds": seeds, "lrs": lrs, "config": str(CONFIG.relative_to(REPO_ROOT)), "test_states": len(truth)},
        "work": str(work),
    }
    notes = " ".join(verdict_notes(v, n, lr) for lr, v in by_rate.items())
    notes += " Reconstructions of the test split, deterministic; values are mean ± std over seeds."
    out = out_dir_for(args.out, quick=False)
    header = (
        f"Synthetic {args.grid} x {args.grid} data, {len(truth)} test states; demo-vae encoder trained {args.steps} "
        f"steps ('conv', seed 0), then each decoder trained {args.steps} steps against that frozen encoder, "
        f"once per seed ({', '.join(map(str, seeds))}) and learning rate ({', '.join(map(rate_text, lrs))})."
    )
    reused = sum(v is None for v in seconds.values())
    if reused:
        header += f" Scored by this code; {reused} of {len(seconds)} runs were trained by an earlier run in {work}."
    json_path, md_path = write_report(
        args.name,
        rows,
        settings=settings,
        summary={"runs": summary, "light_vs_conv": verdict},
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
