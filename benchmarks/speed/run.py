"""Latent versus data-space diffusion: training throughput and sampling time, one process, one device.

    python -m benchmarks.speed                      # paper geometry: paper-data 5x512x512 vs paper-latent 16x64x64
    python -m benchmarks.speed --full-sampling      # ... with the data-space sampler timed end to end too (CPU)
    python -m benchmarks.speed --quick              # demo-data 5x128x128 vs demo-latent 16x16x16 (seconds)
    python -m benchmarks.speed --device cuda --compile

The paper says latent diffusion is "about 25 times faster" without saying at what. Both
candidates are measured here with the same device, precision and batch size:

- training: one optimizer step of the real trainer engine (``DDPEngine.train_step``: forward,
  the real diffusion loss, backward, gradient clipping, AdamW) on fixed inputs already on the
  device, timed step by step after warm-up; throughput = batch / median step time. Data loading,
  per-sample noise generation and the EMA update are the trainer's and are measured by
  ``benchmarks.scaling`` through the real trainer; they are not part of this number.
- VAE encode: what latent caching saves per training sample (the LDM never runs the encoder).
- sampling: time per generated sample of the real sampler (``evaluation.generate.generate``: the
  default 30 deterministic Heun steps = 59 network evaluations, ``diffusion.sampler_steps``) plus
  the way back to physical fields (one VAE decoder pass for latents; un-normalise and clip for
  data space), and the decoder's share.
- a sampling batch sweep (``--sweep``, default 1, 4, 16; same batch on both sides): time per
  network call and per decode against their FLOPs (``benchmarks.speed.sweep``).
- the machine's dense matmul FLOP/s, measured in the same run: each network's achieved FLOP/s
  as a fraction of it (CPU runs too), beside the MFU against a GPU's vendor bf16 peak.
- compiled against eager sampling calls (``--compile-compare``, on by default without
  ``--quick``): ``evaluation.generate.compile_for_sampling`` on the latent denoiser and the VAE
  decoder (and the data-space denoiser on a GPU), timed, with the largest output difference;
  ``--compile-only`` measures just that (each eager call timed beside its compiled one), for a
  step after an eager run (``benchmarks/gpu.sh``).
- FLOPs of every network call counted by ``torch.utils.flop_counter`` on the meta device
  (convolutions, matmuls, attention; element-wise work is not counted), and peak memory.

Where a full measurement is too slow (the data-space sampler on a CPU: 59 evaluations of a
75-GFLOP network), the time per network evaluation is measured on a few evaluations and the
per-sample time is *derived* from it; the JSON and the table say which figures are derived and
by which formula. The latent sampler is timed end to end and also derived the same way, which
shows how close the derivation is.

Modules: ``speed_plan`` (geometry, repeats), ``speed_timing`` (timers, devices, peaks; also used
by ``benchmarks.scaling``), ``speed_flops`` (models, FLOP counts), ``speed_measure`` (the
measurements), ``speed_sweep`` (batch sweep, matmul peak, compiled vs eager), ``speed_setup`` (device, geometry,
networks), ``speed_compile`` (``--compile-only``), ``speed_summary`` (ratios), ``speed_report``
(tables); this module is the command line.
"""

from __future__ import annotations

import argparse
import sys
import time

from benchmarks.common import (
    add_output_options,
    comma_list,
    load_average,
    out_dir_for,
    positive_int,
    print_report,
    write_report,
)
from benchmarks.speed.compiled import run_compile_only
from benchmarks.speed.measure import measure
from benchmarks.speed.plan import NETWORK_EVALS, SAMPLER_STEPS
from benchmarks.speed.report import NOTES, header, sweep_table, table_rows
from benchmarks.speed.sweep import SWEEP_BATCHES
from benchmarks.speed.timing import CONTENTION


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.speed", description="Latent vs data-space diffusion: training and sampling speed"
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "bf16"), help="auto: bf16 autocast on GPU, fp32 on CPU"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the U-Nets and the VAE encoder/decoder")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format for all networks")
    p.add_argument("--batch-size", type=int, default=0, help="samples per step, both spaces (default: GPU 8, CPU 1)")
    p.add_argument("--repeats", type=int, default=0, help="timed repeats per measurement (default by device)")
    p.add_argument(
        "--full-sampling",
        action="store_true",
        help="on CPU, also time the data-space sampler end to end (59 evaluations: slow)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument(
        "--min-cpu-share",
        type=float,
        default=CONTENTION["min_cpu_share"],
        help="CPU: repeat a measurement whose process CPU share was below this (other load)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=CONTENTION["retries"],
        help="CPU: at most this many repeats of a contended measurement (least contended kept)",
    )
    p.add_argument(
        "--sweep",
        type=comma_list(positive_int, "comma-separated batch sizes >= 1"),
        default=list(SWEEP_BATCHES),
        help="batch sizes of the sampling sweep, comma-separated (default 1,4,16; '' for none)",
    )
    p.add_argument(
        "--compile-compare",
        dest="compare_compiled",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time torch.compile'd against eager sampling calls and check they agree (default: on, off with "
        "--quick; compilation takes minutes on a CPU)",
    )
    p.add_argument(
        "--compile-only",
        action="store_true",
        help="only compiled against eager sampling calls, each eager one timed beside it in this run (no "
        "training, sampling, sweep or encode measurements: those are the eager run's); no plot",
    )
    p.add_argument(
        "--compile-backend",
        default="inductor",
        choices=("inductor", "aot_eager", "eager"),
        help="torch.compile backend of the compiled calls (default inductor; aot_eager captures the same graphs "
        "without generating code: gpu.sh --dry on a CPU)",
    )
    p.add_argument("--quick", action="store_true", help="demo presets at 5x128x128 / 16x16x16 (CI smoke test)")
    p.add_argument(
        "--toy", action="store_true", help="tiny presets at 5x32x32 / 4x4x4, implies --quick (gpu.sh --dry: no timing)"
    )
    add_output_options(p, name="speed", name_help="result file name (default speed)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG bar chart")
    args = p.parse_args(argv)
    args.quick = args.quick or args.toy
    if args.compile_only and (args.compile or args.compare_compiled is False):
        p.error("--compile-only compares compiled with eager calls: drop --compile and --no-compile-compare")
    if args.compile_only:
        args.compare_compiled = True
    if args.compare_compiled is None:
        args.compare_compiled = not args.quick
    if args.batch_size < 0 or args.repeats < 0 or args.threads < 0 or args.retries < 0:
        p.error("--batch-size, --repeats, --threads and --retries must be >= 0")
    if not 0.0 <= args.min_cpu_share <= 1.0:
        p.error("--min-cpu-share must be in [0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    CONTENTION.update(min_cpu_share=args.min_cpu_share, retries=args.retries)
    if args.compile_only:
        return run_compile_only(args)
    load_start = load_average()
    started = time.perf_counter()
    result = measure(args)
    result["wall_s"] = time.perf_counter() - started
    result["load_average"] = {"start": load_start, "end": load_average()}
    result["contention"] = dict(CONTENTION)
    out_dir = out_dir_for(args.out, args.quick)
    rows = table_rows(result)
    settings = {
        "quick": args.quick,
        "device": result["device"],
        "precision": result["precision"],
        "compile": args.compile,
        "channels_last": args.channels_last,
        "batch_size": result["batch_size"],
        "threads": result["threads"],
        "presets": result["presets"],
        "geometry": result["geometry"],
        "heun_steps": SAMPLER_STEPS,
        "network_evaluations": NETWORK_EVALS,
        "repeats": args.repeats or "by device",
        "full_sampling": args.full_sampling,
        "sweep_batches": args.sweep,
        "compile_compare": result["compiled"] != [],
        "contention": dict(CONTENTION),
        "load_average_1min": result["load_average"],
    }
    text = header(result) + "\n\n" + sweep_table(result)
    json_path, md_path = write_report(
        args.name, rows, settings=settings, summary=result, header_text=text, notes=NOTES, out_dir=out_dir
    )
    print_report(text, rows)
    print(f"\nwritten {json_path} and {md_path} in {result['wall_s']:.0f} s")
    if not args.no_plot:
        from benchmarks.plots import plot_speed_ratios

        png = plot_speed_ratios(
            json_path, out_dir / ("speed_ratios.png" if args.name == "speed" else f"{args.name}_ratios.png")
        )
        print(f"written {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
