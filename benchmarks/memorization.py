"""Cost and fidelity of the memorisation check (``hpc_seaice.evaluation.memorization``).

    python -m benchmarks.memorization                  # a 512 x 512 synthetic set, a state every 11 days
    python -m benchmarks.memorization --data DIR       # any field data set with train/validation/test splits

Measured: one pass over the training split, split into its parts (reading normalised states
with ``ShardedDataset.read_batch``, the block-mean projection, the nearest-neighbour search),
per training state; the queries are the test states, the validation states and Gaussian-blurred
(sigma 2 cells) copies of training states. Fidelity: for ``--check`` test states, the exact
full-resolution nearest training state (RMS over every ocean cell) against the projected one
(same state or not, and the projected distance as a share of the full RMS to that state, a
lower bound by construction). The search is timed a second time with ``--many`` queries (the
measured ones repeated with a little noise), the count a paper-scale evaluation brings. The
verdicts of the blurred copies and the validation states are recorded too. The cost at paper
scale is extrapolated from the per-state times, in words only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from benchmarks.common import add_output_options, load_average, out_dir_for, positive_int, print_report, write_report
from hpc_seaice.data.blocks import iter_blocks
from hpc_seaice.data.loading.dataset import ShardedDataset
from hpc_seaice.evaluation import memorization as MM

PAPER_TRAIN_STATES = 11_700  # 2009-2016, 6-hourly


def _states(ds: ShardedDataset, indices: range | list[int]) -> np.ndarray:
    return np.stack([ds.raw(i) for i in indices]).astype(np.float64)


def _blur(states: np.ndarray, ocean: np.ndarray, sigma: float) -> np.ndarray:
    weight = np.maximum(ndimage.gaussian_filter(ocean.astype(np.float64), sigma), 1e-9)
    out = [[ndimage.gaussian_filter(np.where(ocean, f, 0.0), sigma) / weight for f in s] for s in states]
    return np.where(ocean, np.asarray(out), 0.0)


def timed_pass(
    data: Path, proj: MM.Projection, queries: np.ndarray, block_bytes: int, many: int
) -> tuple[MM.Neighbours, dict]:
    """The pass of ``nearest_in_split`` with each part timed; the search also with ``many`` queries."""
    ds = ShardedDataset(data, "train", normalize=True)
    search = MM.NearestSearch(queries)
    rng = np.random.default_rng(1)
    tiled = np.resize(queries, (many, queries.shape[1])) + 0.01 * rng.normal(size=(many, queries.shape[1]))
    search_many = MM.NearestSearch(tiled.astype(np.float32))
    times = {"read": 0.0, "project": 0.0, "search": 0.0, f"search, {many} queries": 0.0}
    buffer = np.empty((0,))
    for sl in iter_blocks(len(ds), ds.num_channels * ds.grid[0] * ds.grid[1] * 4, block_bytes):
        n = sl.stop - sl.start
        if len(buffer) < n:
            buffer = np.empty((n, ds.num_channels, *ds.grid), np.float32)
        t0 = time.perf_counter()
        batch = ds.read_batch(range(sl.start, sl.stop), buffer[:n])
        t1 = time.perf_counter()
        projected = proj.normalised_fields(batch)
        t2 = time.perf_counter()
        search.add(projected)
        t3 = time.perf_counter()
        times["read"] += t1 - t0
        times["project"] += t2 - t1
        times["search"] += t3 - t2
        search_many.add(projected)
        times[f"search, {many} queries"] += time.perf_counter() - t3
    times["total"] = times["read"] + times["project"] + times["search"]
    return search.result(times["total"]), times


def full_resolution_check(data: Path, test: np.ndarray, ds: ShardedDataset, found: MM.Neighbours) -> dict[str, Any]:
    """Exact full-resolution nearest training state of each ``test`` state, against the projected search."""
    train = ShardedDataset(data, "train", normalize=False)
    ocean = ds.static.mask > 0.5
    std = ds.static.std[:, None]
    t = test[:, :, ocean] / std  # [k, C, P]
    best = np.full(len(test), np.inf)
    best_idx = np.zeros(len(test), dtype=np.int64)
    to_projected = np.zeros(len(test))
    for i in range(len(train)):
        r = np.asarray(train.raw(i), dtype=np.float64)[:, ocean] / std
        rms = np.sqrt(((t - r) ** 2).mean(axis=(1, 2)))
        better = rms < best
        best[better], best_idx[better] = rms[better], i
        to_projected[found.index == i] = rms[found.index == i]
    return {
        "same_state_share": float((best_idx == found.index).mean()),
        "full_nn_rms": best.tolist(),
        "projected_nn_distance": found.distance.tolist(),
        "projected_over_full_to_same_state": (found.distance / to_projected).tolist(),
        "full_rms_to_projected_nn_over_full_nn": (to_projected / best).tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memorization", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="", help="a field data set (default: generate a synthetic one in --work)")
    p.add_argument("--grid", type=positive_int, default=512, help="synthetic grid side (default 512)")
    p.add_argument("--freq", default="11D", help="synthetic time step (default 11D: 266 training states)")
    p.add_argument("--work", default="/tmp/hpc-seaice-memorization", help="folder for the synthetic data set")
    p.add_argument("--blurred", type=positive_int, default=32, help="blurred training copies among the queries")
    p.add_argument("--check", type=positive_int, default=8, help="test states checked at full resolution")
    p.add_argument("--many", type=positive_int, default=3000, help="query count of the second search timing")
    p.add_argument("--block-mib", type=positive_int, default=MM.READ_BLOCK_BYTES >> 20, help="read block (MiB)")
    add_output_options(p, name="memorization")
    args = p.parse_args(argv)
    data = Path(args.data) if args.data else Path(args.work) / f"synth{args.grid}_{args.freq}"
    if not args.data and not (data / "manifest.json").is_file():
        from hpc_seaice.data.synth.generate import generate

        generate(data, grid=args.grid, freq=args.freq, seed=3, shard_size=64, progress=False, overwrite=True)
    load_start = load_average()
    test_ds = ShardedDataset(data, "test", normalize=False)
    val_ds = ShardedDataset(data, "validation", normalize=False)
    train_raw = ShardedDataset(data, "train", normalize=False)
    ocean = test_ds.static.mask > 0.5
    t0 = time.perf_counter()
    proj = MM.Projection(ocean, test_ds.static.mean, test_ds.static.std)
    setup_s = time.perf_counter() - t0
    test = _states(test_ds, range(len(test_ds)))
    validation = _states(val_ds, range(len(val_ds)))
    pick = np.random.default_rng(0).choice(len(train_raw), min(args.blurred, len(train_raw)), replace=False)
    blurred = _blur(_states(train_raw, sorted(pick)), ocean, 2.0)
    t0 = time.perf_counter()
    sets = {"test": proj.fields(test), "validation": proj.fields(validation), "blurred": proj.fields(blurred)}
    query_s = time.perf_counter() - t0
    queries = np.concatenate(list(sets.values()))
    found, times = timed_pass(data, proj, queries, args.block_mib << 20, args.many)
    n_train = found.num_references
    split = np.cumsum([len(v) for v in sets.values()])[:-1]
    dist = dict(zip(sets, np.split(found.distance, split)))
    idx = dict(zip(sets, np.split(found.index, split)))
    verdicts = {k: MM.memorization_verdict(dist[k], dist["test"]) for k in ("validation", "blurred")}
    k = min(args.check, len(test))
    check = full_resolution_check(data, test[:k], test_ds, MM.Neighbours(dist["test"][:k], idx["test"][:k], n_train, 0))
    rows = [
        {"part": part, "seconds": round(times[part], 3), "ms per training state": round(1e3 * times[part] / n_train, 2)}
        for part in ("read", "project", "search", "total", f"search, {args.many} queries")
    ]
    per_state = times["total"] / n_train
    per_state_many = (times["total"] - times["search"] + times[f"search, {args.many} queries"]) / n_train
    state_gb = 4 * proj.num_variables * ocean.size / 1e9
    read_gb_s = state_gb * n_train / times["read"]
    grid = f"{ocean.shape[0]} x {ocean.shape[1]}"
    header = (
        f"{data}: {grid}, {n_train} training states, {len(queries)} queries ({len(test)} test, "
        f"{len(validation)} validation, {len(blurred)} blurred copies); projection {proj.block} x {proj.block} "
        f"blocks ({proj.dim} values per state); read blocks of {args.block_mib} MiB."
    )
    notes = (
        f"Extrapolated, not measured: at {per_state * 1e3:.0f} ms per training state ({per_state_many * 1e3:.0f} ms "
        f"with {args.many} queries, about what three models, the floor and a 6-hourly test year make), a training "
        f"split of {PAPER_TRAIN_STATES:,} states at this grid takes about {per_state * PAPER_TRAIN_STATES / 60:.0f} "
        f"({per_state_many * PAPER_TRAIN_STATES / 60:.0f}) minutes on this machine, if it reads at the measured "
        f"{read_gb_s:.2f} GB/s ({state_gb * PAPER_TRAIN_STATES:.0f} GB in all; a set this small was likely read "
        f"from the page cache, a paper-scale one comes from disk and its read time is its size over the disk's "
        f"bandwidth). "
        f"Full resolution, {k} test states: the projected nearest state is the exact one for "
        f"{check['same_state_share']:.0%}, and the full RMS to the projected nearest state is at most "
        f"{max(check['full_rms_to_projected_nn_over_full_nn']) - 1:.1%} above the exact nearest's; "
        f"the projected distance is "
        f"{min(check['projected_over_full_to_same_state']):.2f}-{max(check['projected_over_full_to_same_state']):.2f} "
        f"of the full RMS to the same state (a lower bound). Blurred copies flagged: "
        f"{verdicts['blurred']['copies_training']} (share below {verdicts['blurred']['share_below']:.0%}); "
        f"validation states flagged: {verdicts['validation']['copies_training']} "
        f"(share below {verdicts['validation']['share_below']:.0%}, threshold {verdicts['blurred']['threshold']:.3f})."
    )
    settings = {
        "data": str(data),
        "grid": grid,
        "block": proj.block,
        "train_states": n_train,
        "queries": len(queries),
        "read_block_mib": args.block_mib,
        "load_average_start": load_start,
        "load_average_end": load_average(),
    }
    summary = {
        "times_s": times,
        "projection_setup_s": setup_s,
        "query_projection_s": query_s,
        "full_resolution_check": check,
        "verdicts": verdicts,
        "extrapolated_paper_minutes": per_state * PAPER_TRAIN_STATES / 60,
        "extrapolated_paper_minutes_many_queries": per_state_many * PAPER_TRAIN_STATES / 60,
        "read_gb_per_s": read_gb_s,
    }
    out = out_dir_for(args.out, quick=False)
    write_report(args.name, rows, settings=settings, summary=summary, header_text=header, notes=notes, out_dir=out)
    print_report(header, rows)
    print(notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
