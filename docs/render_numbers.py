"""Render the measured numbers the READMEs and docs/*.md quote, from benchmarks/results/*.json.

    python docs/render_numbers.py          # rewrite every marked block in README.md, benchmarks/README.md, docs/*.md
    python docs/render_numbers.py --check  # exit 1 naming each block that differs (the tests run this)

A quoted number sits between two markers,

    <!-- numbers:speed_table -->
    ...rendered text...
    <!-- /numbers:speed_table -->

and only this script writes what is between them, from the JSON files the benchmarks wrote. So a
table or sentence of measurements is never typed by hand, and a re-run benchmark changes every
page that quotes it at the next `make docs` (and fails `--check` until then).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- numbers:(?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /numbers:(?P=name) -->)", re.S)
OPEN = re.compile(r"<!-- numbers:([a-z0-9_]+) -->")
LOADER_TARGET = 0.8  # the data loader's target (benchmarks/README.md); dataloader.json records no target


class Results:
    """The JSON files of one results folder, each read once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[str, dict] = {}

    def __call__(self, name: str) -> dict:
        if name not in self._cache:
            path = self.folder / f"{name}.json"
            if not path.is_file():
                raise SystemExit(f"render_numbers: {path} is missing (run the benchmark that writes it)")
            # the benchmarks write NaN for 'not applicable'; json reads it as float('nan')
            self._cache[name] = json.loads(path.read_text())
        return self._cache[name]


def _pct(x: float, digits: int = 0) -> str:
    return f"{100 * x:.{digits}f} %"


def _source(r: dict, name: str) -> str:
    """One line saying which file, device, torch, commit and command a table comes from."""
    env = r["environment"]
    commit = env.get("git_commit", "?")[:7] + (
        " (uncommitted changes)" if env.get("git_commit", "").endswith("dirty") else ""
    )
    return (
        f"*From `benchmarks/results/{name}.json`: {env['device']}, torch {env['torch']}, commit {commit}, "
        f"`{env['command']}`, {env['timestamp'][:10]}.*"
    )


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _speed_row(r: dict, quantity: str) -> dict:
    for row in r["results"]:
        if row["quantity"].strip() == quantity:
            return row
    raise SystemExit(f"render_numbers: speed.json has no row {quantity!r}")


# ---- speed ------------------------------------------------------------------------------------


def speed_table(res: Results) -> str:
    """The paper-geometry table: throughput, sampling, one call, efficiency, with the FLOP ratios."""
    r = res("speed")
    s = r["summary"]
    rows = []
    for quantity, flops in [
        ("training throughput (samples/s)", "FLOPs per training step"),
        ("sampling time per sample (s)", "FLOPs per generated sample"),
        ("network evaluation (s per batch)", None),
    ]:
        row = _speed_row(r, quantity)
        flop_ratio = _speed_row(r, flops)["latent speed-up"] if flops else f"{s['ratios']['forward_flops']:.1f}x"
        latent = row["latent"]
        if quantity.startswith("sampling"):
            latent += f" (decode {_speed_row(r, 'decode to fields (s per sample)')['latent']})"
        rows.append([quantity, row["data space"], latent, f"**{row['latent speed-up']}**", flop_ratio])
    frac = _speed_row(r, "fraction of measured matmul FLOP/s (training / eval)")
    matmul = s["matmul"]["flops_per_s"] / 1e9
    rows.append(
        [
            f"fraction of the measured matmul rate ({matmul:.0f} GFLOP/s), training / sampling call",
            frac["data space"].replace("%", " %"),
            frac["latent"].replace("%", " %"),
            "",
            "",
        ]
    )
    network = _speed_row(r, "network")
    t = s["targets"]
    verdict = lambda met: "met" if met else "missed"  # noqa: E731
    text = [
        f"{network['data space']} against {network['latent']}; {network['how']}. "
        f"{r['settings']['heun_steps']} Heun "
        f"steps ({r['settings']['network_evaluations']} network evaluations), batch {s['batch_size']}, "
        f"{s['threads']} thread(s), {s['precision']}.",
        "",
        _table(["measure", "data space", "latent", "latent speed-up", "FLOP ratio"], rows),
        "",
        f"Targets: training >= {t['latent_over_data_ratio']:g}x ({verdict(t['training_met'])}), sampling "
        f">= {t['sampling_ratio']:g}x ({verdict(t['sampling_met'])}; measured "
        f"{s['ratios']['sampling_over_forward_flops']:.2f} of the denoisers' per-call FLOP ratio), VAE decoder "
        f"<= {_pct(t['decoder_share_max'])} of a latent sample ({verdict(t['decoder_share_met'])}: "
        f"{_speed_row(r, 'decoder share of a sample' + chr(39) + 's time')['latent'].replace('%', ' %')}).",
        "",
        _source(r, "speed"),
    ]
    return "\n".join(text)


def speed_sweep(res: Results) -> str:
    """The batch sweep: latent/data ratio per batch, each network's share of the matmul rate."""
    r = res("speed")
    s = r["summary"]
    by = {(e["space"], e["batch"]): e for e in s["sweep"]}
    rows = []
    for batch in sorted(int(b) for b in s["sweep_ratios"]):
        ratio = s["sweep_ratios"][str(batch)]
        latent, data = by.get(("latent", batch)), by.get(("data", batch))
        rows.append(
            [
                str(batch),
                f"**{ratio['sampling_time']:.1f}x**",
                f"{ratio['network_call_time']:.1f}x",
                _pct(data["matmul_fraction"]) if data else "-",
                _pct(latent["matmul_fraction"]) if latent else "-",
                _pct(latent["decoder_share"], 1) if latent else "-",
            ]
        )
    header = [
        "batch",
        "sampling time per sample, data / latent (derived)",
        "one network call, data / latent",
        "data denoiser, share of matmul rate",
        "latent denoiser, share of matmul rate",
        "decoder share of a latent sample",
    ]
    return "\n".join([_table(header, rows), "", _source(r, "speed")])


def speed_compile(res: Results) -> str:
    """torch.compile against eager sampling calls, as measured in the same run."""
    r = res("speed")
    rows = [
        [
            c["what"],
            str(c["batch"]),
            f"{c['eager_s']:.3g}",
            f"{c['compiled_s']:.3g}",
            f"{c['speedup']:.2f}x",
            f"{c['compile_s']:.0f}",
            f"{c['max_abs_diff']:.1e}",
        ]
        for c in r["summary"].get("compiled") or []
    ]
    if not rows:
        return "*This run did not compare compiled and eager calls.*"
    header = [
        "call",
        "batch",
        "eager (s)",
        "compiled (s)",
        "compiled speed-up",
        "compile time (s)",
        "largest output difference",
    ]
    return "\n".join([_table(header, rows), "", _source(r, "speed")])


# ---- data loading ------------------------------------------------------------------------------


def _loader(r: dict, grid: str, path: str) -> str:
    for row in r["results"]:
        if row["grid"] == grid and row["path"] == path:
            return _pct(row["vs_raw"])
    return ""


def dataloader_table(res: Results) -> str:
    """Each reader path's bandwidth over a raw sequential h5py read, per geometry."""
    r = res("dataloader")
    grids = list(dict.fromkeys(row["grid"] for row in r["results"]))
    rows = []
    for grid in grids:
        name = f"latent {grid}" if grid.startswith("16x") else f"fields {grid}"
        rows.append(
            [
                name,
                f"**{_loader(r, grid, 'batch loader, 0 workers')}**",
                f"**{_loader(r, grid, 'batch loader, 2 workers')}**",
                _loader(r, grid, "batch loader, 2 workers, one batch per hand-over"),
                _loader(r, grid, "batch loader, 0 workers, in memory"),
                f"{_loader(r, grid, 'reader, 0 workers, collate')} / {_loader(r, grid, 'reader, 2 workers, collate')}",
                _loader(r, grid, "DataLoader alone, 2 workers (zero-cost dataset)"),
            ]
        )
        post0 = _loader(r, grid, "batch loader, 0 workers, mean and posterior logvar")
        if post0:
            post2 = _loader(r, grid, "batch loader, 2 workers, mean and posterior logvar")
            rows.append([f"{name}, mean and posterior logvar", f"**{post0}**", f"**{post2}**", "", "", "", ""])
    header = [
        "geometry",
        "batch loader, 0 workers",
        "2 workers",
        "2 workers, one batch per hand-over",
        "in memory (0 workers)",
        "`DataLoader` + `ShardedDataset`, 0 / 2 workers",
        "`DataLoader` alone, zero-cost dataset",
    ]
    return "\n".join(
        [
            f"Batch {r['settings']['batch']}, best of {r['settings']['repeat']} passes, page cache "
            f"{r['settings']['page_cache']}; each cell is the path's bandwidth over a raw sequential h5py read "
            "in the same run (bold: the paths the trainer uses).",
            "",
            _table(header, rows),
            "",
            _source(r, "dataloader"),
        ]
    )


# ---- decoder quality ---------------------------------------------------------------------------

_DQ_COLUMNS = ["RMSE sit", "RMSE sic", "RMSE damage", "small-scale PSD log10 ratio", "MIZ-area error"]
_SHARES = ["share sit=0 error", "share sic=0 error", "share sic=1 error", "share damage=1 error"]


def _decoder_label(text: str) -> tuple[str, str]:
    """'light, frozen encoder, lr 0.008' -> ('light', '0.008'); the joint run -> its description."""
    if ", lr " not in text:
        return f"{text} (mirror), jointly trained with the encoder", "the config's"
    name, rate = text.rsplit(", lr ", 1)
    name = name.replace(", frozen encoder", "")
    return ("conv (mirror)" if name == "conv" else name), rate


def _decoder_quality_table(res: Results, name: str) -> str:
    r = res(name)
    rows = []
    for row in r["results"]:
        decoder, rate = _decoder_label(row["decoder"])
        shares = " / ".join(row[k].split(" ±")[0].replace(" pt", "") for k in _SHARES)
        rows.append([decoder, rate, str(row["seeds"]), *(row[k].replace("%", " %") for k in _DQ_COLUMNS), shares])
    header = [
        "decoder",
        "learning rate",
        "seeds",
        *_DQ_COLUMNS,
        "sit = 0 / sic = 0 / sic = 1 / damage = 1 share error (pt)",
    ]
    st = r["settings"]
    return "\n".join(
        [
            f"{st['grid']} x {st['grid']} synthetic data, {st['test_states']} test states, {st['steps']} steps per "
            f"decoder, light decoder levels {st['light_channels']} (refinement {st['light_refine']}); mean ± std over "
            "the seeds.",
            "",
            _table(header, rows),
            "",
            _source(r, name),
        ]
    )


def _verdicts(res: Results, name: str) -> str:
    """Per learning rate: how many of the scores hold the 5 % target, and which do not."""
    r = res(name)
    lines = []
    for rate, scores in r["summary"]["light_vs_conv"].items():
        held = [k for k, v in scores.items() if v["holds"]]
        missed = [
            f"{k} ({100 * v['change']:+.1f} %, {'beyond' if v['beyond_seed_spread'] else 'within'} the seed spread)"
            for k, v in scores.items()
            if not v["holds"]
        ]
        line = f"- {rate.replace('lr', 'learning rate')}: **{len(held)} of {len(scores)}** scores hold"
        lines.append(line + (f"; not: {'; '.join(missed)}." if missed else "."))
    return "\n".join(lines)


def decoder_quality_table(res: Results) -> str:
    return _decoder_quality_table(res, "decoder_quality")


def decoder_quality_64_table(res: Results) -> str:
    return _decoder_quality_table(res, "decoder_quality_64")


def decoder_quality_verdicts(res: Results) -> str:
    return _verdicts(res, "decoder_quality")


def decoder_quality_64_verdicts(res: Results) -> str:
    return _verdicts(res, "decoder_quality_64")


def decoder_headline(res: Results) -> str:
    """The README's one line on the light decoder: its best rate and how many scores hold there."""
    r = res("decoder_quality")
    best_rate, best = max(
        r["summary"]["light_vs_conv"].items(), key=lambda item: sum(v["holds"] for v in item[1].values())
    )
    held = sum(v["holds"] for v in best.values())
    miz = best["miz_area_error"]
    return (
        f"The light VAE decoder, trained against a frozen encoder at {best_rate.replace('lr ', 'learning rate ')} "
        f"({r['settings']['grid']} x {r['settings']['grid']}, {len(r['settings']['seeds'])} seeds), is within 5 % "
        f"of the mirror decoder or better on {held} of {len(best)} scores (MIZ-area error "
        f"{_pct(miz['light'], 1)} against {_pct(miz['conv'], 1)})."
    )


# ---- memorisation check ----------------------------------------------------------------------


def memorization_cost(res: Results) -> str:
    """Cost and fidelity of evaluate's memorisation check (benchmarks/memorization.py)."""
    r = res("memorization")
    s, summary = r["settings"], r["summary"]
    rows = [[row["part"], f"{row['seconds']:.3g}", f"{row['ms per training state']:.3g}"] for row in r["results"]]
    check = summary["full_resolution_check"]
    ratios = check["projected_over_full_to_same_state"]
    verdicts = summary["verdicts"]
    k = len(ratios)
    return "\n".join(
        [
            f"{s['grid']} synthetic split, {s['train_states']} training states, {s['queries']} queries, "
            f"{s['block']} x {s['block']} blocks, load average {s['load_average_start']}-{s['load_average_end']}:",
            "",
            _table(["part", "seconds", "ms per training state"], rows),
            "",
            f"Extrapolated, not measured: 11,700 training states at this grid take about "
            f"{summary['extrapolated_paper_minutes']:.0f} minutes "
            f"({summary['extrapolated_paper_minutes_many_queries']:.0f} with 3000 queries) on this machine if read "
            f"at the measured {summary['read_gb_per_s']:.2f} GB/s (page cache); from disk the read takes the "
            f"split's size over the disk's bandwidth. Fidelity on {k} test states: the projected nearest "
            f"training state is the exact full-resolution one for {round(check['same_state_share'] * k)} of {k}, "
            f"and where it is not its full RMS is at most "
            f"{_pct(max(check['full_rms_to_projected_nn_over_full_nn']) - 1, 1)} above the exact nearest's; the "
            f"projected distance is {min(ratios):.2f}-{max(ratios):.2f} of the full RMS (the lower bound). Blurred "
            f"copies flagged: {'yes' if verdicts['blurred']['copies_training'] else 'no'} "
            f"({_pct(verdicts['blurred']['share_below'])} below the threshold); validation states flagged: "
            f"{'yes' if verdicts['validation']['copies_training'] else 'no'} "
            f"({_pct(verdicts['validation']['share_below'])} below).",
            "",
            _source(r, "memorization"),
        ]
    )


# ---- scaling -----------------------------------------------------------------------------------


def scaling_table(res: Results) -> str:
    """The CPU scaling runs of the real trainer under torchrun."""
    r = res("scaling")
    eff, targets = r["summary"]["efficiencies"], r["summary"]["targets"]
    rows = [
        [
            row["run"],
            row["ranks x threads"],
            row["engine"],
            str(row["global batch"]),
            str(row["per-rank batch"]),
            f"{row['samples/s']:.1f}",
            f"{row['step time (s)']:.3f}",
            row["data wait"].replace("%", " %"),
            row["other load"].replace("%", " %"),
        ]
        for row in r["results"]
    ]
    header = [
        "run",
        "ranks x threads",
        "engine",
        "global batch",
        "per-rank batch",
        "samples/s",
        "step time (s)",
        "data wait",
        "other load",
    ]
    by_batch = ", ".join(
        f"{_pct(v, 1)} at per-rank batch {k}" for k, v in eff["weak_efficiency_by_per_rank_batch"].items()
    )
    met = eff["weak_efficiency"] >= targets["weak_efficiency"]
    return "\n".join(
        [
            f"{r['settings']['launcher']}, `{r['settings']['unet_preset']}` on `{r['settings']['data']}`. Weak-scaling "
            f"efficiency of 2 ranks against 1: **{_pct(eff['weak_efficiency'], 1)}** ({by_batch}; target "
            f"{_pct(targets['weak_efficiency'])}: {'met' if met else 'missed'}). At the same global batch DeepSpeed "
            f"ZeRO-1 and ZeRO-2 run at {eff['deepspeed_zero1_over_ddp']:.2f}x and "
            f"{eff['deepspeed_zero2_over_ddp']:.2f}x "
            f"of DDP. The worst data wait is {_pct(eff['max_median_data_wait_fraction'], 1)} of step time (target "
            f"< {_pct(targets['data_wait_fraction'])}).",
            "",
            _table(header, rows),
            "",
            _source(r, "scaling"),
        ]
    )


def scaling_twonode(res: Results) -> str:
    """The SLURM scaling benchmark on the two-host test cluster."""
    r = res("twonode/scaling_slurm")
    rows = []
    for row in r["results"]:
        eff = row.get("weak_efficiency") if row["mode"] == "weak" else row.get("strong_efficiency")
        rows.append(
            [
                row["space"],
                row["mode"],
                str(row["nodes"]),
                str(row["ranks"]),
                str(row["global_batch"]),
                f"{row['samples_per_s']:.1f}",
                f"{row['step_time_s']:.3f}",
                _pct(row["allreduce_share"]),
                "-" if row["mode"] == "base" else _pct(eff),
            ]
        )
    header = [
        "space",
        "mode",
        "nodes",
        "ranks",
        "global batch",
        "samples/s",
        "step time (s)",
        "all-reduce share of a step",
        "efficiency",
    ]
    ratios = ", ".join(f"{x['weak']:.1f}x on {x['nodes']} node(s)" for x in r["latent_over_data"])
    env = r["environment"]
    return "\n".join(
        [
            _table(header, rows),
            "",
            f"Latent / data throughput (weak runs): {ratios}.",
            "",
            f"*From `benchmarks/results/twonode/scaling_slurm.json`: {env['device']}, torch {env['torch']}, commit "
            f"{env['git_commit'][:7]}, {env['timestamp'][:10]}.*",
        ]
    )


# ---- the combined verdicts ---------------------------------------------------------------------


def summary_table(res: Results) -> str:
    """Every target of the benchmark suite with its measured value and verdict (summary.json)."""
    r = res("summary")
    rows = [
        [
            row["benchmark"],
            row["measure"],
            row["value"].replace("%", " %"),
            row["target"].replace("%", " %"),
            row["verdict"],
        ]
        for row in r["results"]
    ]
    return "\n".join([_table(["part", "measure", "value", "target", "verdict"], rows), "", _source(r, "summary")])


def headline_table(res: Results) -> str:
    """The README's short table: one row per target family, from the parts' JSON files."""
    speed, dl, sc = res("speed"), res("dataloader"), res("scaling")
    ratios, targets = speed["summary"]["ratios"], speed["summary"]["targets"]
    share = _speed_row(speed, "decoder share of a sample's time")["latent"].replace("%", " %")
    trainer = [
        row["vs_raw"]
        for row in dl["results"]
        if row["path"].startswith("batch loader")
        and "in memory" not in row["path"]
        and "one batch per hand-over" not in row["path"]
    ]
    eff = sc["summary"]["efficiencies"]
    sc_targets = sc["summary"]["targets"]

    def met(ok: bool) -> str:
        return "met" if ok else "**missed**"

    rows = [
        [
            "training throughput, latent / data",
            f"**{ratios['training_throughput']:.1f}x** (FLOP ratio {ratios['training_flops']:.1f}x)",
            f">= {targets['latent_over_data_ratio']:g}x",
            met(targets["training_met"]),
        ],
        [
            "sampling time per sample, data / latent",
            f"**{ratios['sampling_time']:.1f}x** (FLOP ratio {ratios['sampling_flops']:.1f}x)",
            f">= {targets['sampling_ratio']:g}x",
            met(targets["sampling_met"]),
        ],
        [
            "VAE decoder's share of a latent sample",
            share,
            f"<= {_pct(targets['decoder_share_max'])}",
            met(targets["decoder_share_met"]),
        ],
        [
            "data loader / raw h5py read, every trainer path",
            f"{_pct(min(trainer))} to {_pct(max(trainer))}",
            f">= {_pct(LOADER_TARGET)}",
            met(min(trainer) >= LOADER_TARGET),
        ],
        [
            "weak scaling, 2 CPU ranks / 1",
            _pct(eff["weak_efficiency"], 1),
            f">= {_pct(sc_targets['weak_efficiency'])}",
            met(eff["weak_efficiency"] >= sc_targets["weak_efficiency"]),
        ],
        [
            "worst data wait in training",
            _pct(eff["max_median_data_wait_fraction"], 1),
            f"< {_pct(sc_targets['data_wait_fraction'])}",
            met(eff["max_median_data_wait_fraction"] < sc_targets["data_wait_fraction"]),
        ],
    ]
    refined = ratios.get("sampling_time_latent_refined")
    if refined is not None:  # the latent path that does not smooth (docs/refiner.md): a fifth of the speed-up at most
        rows.insert(
            2,
            [
                "sampling time per sample, data / (latent + refiner)",
                f"**{refined:.1f}x**",
                ">= 15x",
                met(refined >= 15.0),
            ],
        )
    env = speed["environment"]
    return "\n".join(
        [
            _table(["measure", "measured", "target", "verdict"], rows),
            "",
            f"*{env['device']}, {speed['settings']['precision']}, torch {env['torch']}; from `benchmarks/results/` "
            "(speed, dataloader, scaling).*",
        ]
    )


# ---- the study and the latent paths that do not smooth ---------------------------------------


def _interval_text(i: dict) -> str:
    est, low, high = i.get("estimate"), i.get("low"), i.get("high")
    if est is None or not all(isinstance(x, int | float) and x == x for x in (est, low, high)):
        return "n/a"
    return f"{est:+.2f} [{low:+.2f}, {high:+.2f}]"


def study_findings(res: Results) -> str:
    """The study's findings (study.json): verdict, reason and the numbers each verdict used."""
    r = res("study")
    s, env = r["summary"], r["environment"]
    samples = r["summary"]["plan"]["num_samples"]
    lines = [
        f"`python -m benchmarks.study`: {s['grid'][0]} x {s['grid'][1]} synthetic Arctic, {s['num_test_states']} test "
        f"states, {samples} samples per model, every score against the floor with 95 % bootstrap intervals; "
        f"{sum(st['seconds'] or 0 for st in s['stages']) / 60:.0f} min of wall time over all stages on "
        f"{env['device']} (commit "
        f"{env.get('git_commit', '?')[:7]}).",
        "",
    ]
    for f in s["findings"]:
        numbers = f["numbers"]
        if len(numbers) > 6:
            estimates = [v["estimate"] for v in numbers.values() if v.get("estimate") == v.get("estimate")]
            detail = f"{len(numbers)} numbers, estimates {min(estimates):.2f} to {max(estimates):.2f}"
        else:
            detail = "; ".join(f"{k} {_interval_text(v)}" for k, v in numbers.items())
        lines.append(f"- **{f['id']}** ({f['title']}): **{f['verdict']}**: {f['reason']}. {detail}.")
    return "\n".join(lines)


def smoothing_summary(res: Results) -> str:
    """The trade-off sentences of benchmarks/results/smoothing.md (smoothing.json)."""
    r = res("smoothing")
    return "\n".join(r["trade_off"])


# ---- sampler ----------------------------------------------------------------------------------


def sampler_table(res: Results) -> str:
    """The sampler's returned std per direction of the data's spectrum, by candidate setting."""
    r = res("sampler_convergence")
    s = r["summary"]
    rows = [
        [
            row["spacing"],
            str(row["steps"]),
            str(row["calls"]),
            f"{row['sigma_min']:.2g}",
            *(f"{row[f'at {p} %']:+.1f}" for p in ("0.003", "0.01", "0.1", "1", "100", "332")),
            f"{row['max error %']:+.1f} / {row['min error %']:+.1f}",
            f"{row['log-sigma step at 0.01']:.2f} / {row['log-sigma step at 300']:.2f}",
            "**yes**" if row["passes 5 %"] else "no",
        ]
        for row in r["results"]
    ]
    header = ["spacing", "steps", "calls", "sigma_min", "0.003", "0.01", "0.1", "1", "100", "332"]
    header += ["max / min (%)", "log-sigma step at 0.01 / 300", "within 5 %"]
    mc, sp = s["monte_carlo"], s["spectrum"]
    return "\n".join(
        [
            f"Returned std / data std - 1, in %, at data stds 0.003 ... 332, and its extremes over all "
            f"{sp['directions']} directions of the test spectrum ({sp['min_std']:.3g} to {sp['max_std']:.3g}); "
            f"sigma_max = e^7. The default ({s['default']['spacing']}, {s['default']['steps']} steps) sampled "
            f"with {mc['samples']} draws per direction: largest error {mc['max_abs_error_%']:+.2f} % "
            f"(standard error of a std: {mc['standard_error_%']} %).",
            "",
            _table(header, rows),
            "",
            _source(r, "sampler_convergence"),
        ]
    )


RENDERERS: dict[str, Callable[[Results], str]] = {
    f.__name__: f
    for f in [
        speed_table,
        speed_sweep,
        speed_compile,
        dataloader_table,
        decoder_quality_table,
        decoder_quality_64_table,
        decoder_quality_verdicts,
        decoder_quality_64_verdicts,
        decoder_headline,
        memorization_cost,
        sampler_table,
        scaling_table,
        scaling_twonode,
        summary_table,
        headline_table,
        study_findings,
        smoothing_summary,
    ]
}


def pages(root: Path) -> list[Path]:
    """The files whose marked blocks this script owns."""
    candidates = [root / "README.md", root / "benchmarks" / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [page for page in candidates if page.is_file()]


def render_text(text: str, res: Results, where: str = "") -> str:
    """`text` with every marked block replaced by its rendering (an unknown block name is an error)."""
    for name in OPEN.findall(text):
        if name not in RENDERERS:
            raise SystemExit(f"render_numbers: {where} has a block '{name}' that no renderer knows")
    if len(OPEN.findall(text)) != len(BLOCK.findall(text)):
        raise SystemExit(f"render_numbers: {where} has a numbers block without its closing marker")
    return BLOCK.sub(lambda m: m.group(1) + RENDERERS[m.group("name")](res).rstrip("\n") + "\n" + m.group(4), text)


def _renderings(root: Path, results: Path) -> Iterator[tuple[Path, str, str]]:
    """(page, committed text, fresh rendering) of every page that holds numbers blocks."""
    res = Results(results)
    for page in pages(root):
        text = page.read_text()
        yield page, text, render_text(text, res, str(page))


def stale_blocks(root: Path = ROOT, results: Path = RESULTS) -> list[str]:
    """'FILE: BLOCK' for every block whose committed text differs from a fresh rendering."""
    stale = []
    for page, text, fresh in _renderings(root, results):
        old = {m.group("name"): m.group("body") for m in BLOCK.finditer(text)}
        new = {m.group("name"): m.group("body") for m in BLOCK.finditer(fresh)}
        stale += [f"{page.relative_to(root)}: {name}" for name in old if old[name] != new[name]]
    return stale


def render_all(root: Path = ROOT, results: Path = RESULTS) -> list[Path]:
    """Rewrite every page whose blocks changed; returns the pages written."""
    written = []
    for page, text, fresh in _renderings(root, results):
        if fresh != text:
            page.write_text(fresh)
            written.append(page)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed block differs from the JSON")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (README.md and docs/)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the folder of the benchmark JSON files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_blocks(args.root, args.results)
        for item in stale:
            print(f"stale numbers block (run `python docs/render_numbers.py`): {item}", file=sys.stderr)
        return 1 if stale else 0
    for page in render_all(args.root, args.results):
        print(f"rendered {page.relative_to(args.root)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
