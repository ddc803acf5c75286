"""``hpc-seaice data synth | convert | stats | verify``: create, convert and inspect data sets.

Each command imports what it drives when it runs, so ``hpc-seaice --help`` loads none of it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def run_synth(args: argparse.Namespace) -> int:
    """``hpc-seaice data synth``: generate, then print the summary and the time it took."""
    from hpc_seaice.cli.options import options_for
    from hpc_seaice.data.synth.generate import generate, summarize

    t0 = time.perf_counter()
    generate(**options_for(generate, args))
    print(summarize(args.out))
    print(f"  generated in {time.perf_counter() - t0:.1f} s")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """``hpc-seaice data convert INPUT... --out DIR``: convert, then print the summary."""
    from hpc_seaice.cli.options import options_for
    from hpc_seaice.data.convert.pipeline import convert, parse_splits
    from hpc_seaice.data.synth.generate import summarize

    names = [n.strip() for n in args.variables.split(",") if n.strip()]
    convert(**options_for(convert, args, variables=names, splits=parse_splits(args.splits)))
    print(summarize(args.out))
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """``hpc-seaice data stats DIR``: recompute and store the train-split statistics."""
    from hpc_seaice.data.format.manifest import read_manifest
    from hpc_seaice.data.format.static import read_static
    from hpc_seaice.data.stats.normalisation import compute_stats, format_stats

    mean, std = compute_stats(args.path)
    manifest = read_manifest(args.path)
    print(f"{Path(args.path) / 'static.h5'}: statistics over ocean cells of the train split")
    print(format_stats(manifest, mean, std))
    pc1 = read_static(args.path).pc1_std
    if pc1 is not None:
        print(f"leading principal-component std (normalised units): {pc1:.4g}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """``hpc-seaice data verify DIR``: hashes, shapes and bounds, then one summary line."""
    from hpc_seaice.data.format.manifest import read_manifest
    from hpc_seaice.data.format.verify import split_counts, verify_dataset

    verify_dataset(args.path)
    manifest = read_manifest(args.path)
    counts = split_counts(args.path, manifest)
    per_split = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"{args.path}: OK ({manifest.num_samples} samples in {len(manifest.shards)} shards; {per_split})")
    return 0
