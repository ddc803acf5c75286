"""What the `hpc-seaice` command line accepts: every sub-command's options and their help.

Only argparse and the version here, so ``hpc-seaice --help`` loads nothing else; what each
sub-command does is in the command modules of :mod:`hpc_seaice.cli`.
"""

from __future__ import annotations

import argparse

from hpc_seaice import __version__
from hpc_seaice.data.format.units import ASSUME_HELP
from hpc_seaice.data.format.units import PROJECT as PROJECT_UNITS


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="create, convert, inspect sharded HDF5 data sets")
    dsub = data.add_subparsers(dest="data_command", metavar="{synth,convert,stats,verify}")
    dsub.required = True

    synth = dsub.add_parser("synth", help="generate a synthetic neXtSIM-like data set")
    synth.add_argument("--out", required=True, help="output folder (created)")
    synth.add_argument(
        "--grid", type=int, default=512, help="grid side in cells, a divisor of 512 and at least 16 (default 512)"
    )
    synth.add_argument("--start", default="2009-01-01", help="first time stamp (default 2009-01-01)")
    synth.add_argument("--end", default="2018-12-31", help="last time stamp (default 2018-12-31)")
    synth.add_argument("--freq", default="6h", help="time step, e.g. 6h, 1D, 5D (default 6h)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--shard-size", type=int, default=256, help="samples per shard (default 256)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing data set")

    convert = dsub.add_parser("convert", help="convert neXtSIM NetCDF/zarr output (xarray)")
    convert.add_argument("inputs", nargs="+", help="NetCDF files, globs or zarr stores")
    convert.add_argument("--out", required=True, help="output folder (created)")
    convert.add_argument(
        "--variables",
        default="sit,sic,damage,siu,siv",
        help="source names for sit,sic,damage,siu,siv in this order (default: same names)",
    )
    convert.add_argument("--crop", default="", help="y0:y1,x0:x1 crop, e.g. 91:603,8:520")
    convert.add_argument("--shard-size", type=int, default=256, help="samples per shard")
    convert.add_argument(
        "--splits",
        default="",
        help="NAME=START..END,... inclusive dates (default train=2009-01-01..2016-12-31,"
        "validation=2017-01-01..2017-12-31,test=2018-01-01..2018-12-31)",
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing data set")
    convert.add_argument("--assume-units", nargs="?", const=PROJECT_UNITS, default=None, help=ASSUME_HELP)

    stats = dsub.add_parser(
        "stats",
        help="(re)compute normalisation statistics on the train split and the std of its leading principal "
        "component (pc1_std, which sampling's sigma_max must exceed 3x)",
    )
    stats.add_argument("path", help="data set folder")

    verify = dsub.add_parser("verify", help="check hashes, shapes and bounds")
    verify.add_argument("path", help="data set folder")


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train the autoencoder or a diffusion model (alone, torchrun, srun or mpirun)",
    )
    train.add_argument("config", help="experiment YAML (configs/demo/*.yaml, configs/paper/*.yaml)")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=100")

    encode = sub.add_parser(
        "encode", help="encode every split into latent shards with a trained VAE (latent statistics and pc1_std)"
    )
    encode.add_argument("--autoencoder", required=True, help="autoencoder run folder")
    encode.add_argument("--data", required=True, help="field data set folder")
    encode.add_argument("--out", required=True, help="latent data set folder (created)")
    encode.add_argument("--batch-size", type=int, default=8, help="samples per forward pass")
    encode.add_argument("--overwrite", action="store_true", help="replace an existing latent set")

    sample = sub.add_parser("sample", help="generate samples from a trained diffusion or refiner run")
    sample.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        required=True,
        help="diffusion or refiner run folder (spell it --run-dir under torchrun, whose own --run-path swallows --run)",
    )
    sample.add_argument(
        "--num",
        "--num-samples",
        dest="num",
        type=int,
        required=True,
        help="number of samples (--num-samples under torchrun)",
    )
    sample.add_argument("--out", required=True, help="output NetCDF file")
    sample.add_argument(
        "--steps",
        type=int,
        default=None,
        help="Heun steps (default: the run's diffusion.sampler_steps, 30 = one step per unit of log-SNR "
        "on [-14, 15]: within 5 %% of the data's std in every principal direction, docs/sampler.md)",
    )
    sample.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    sample.add_argument("--batch-size", type=int, default=4, help="samples per batch and rank")
    sample.add_argument("--checkpoint", default="latest", help="checkpoint step or 'latest'")
    sample.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    sample.add_argument(
        "--name", default=None, help="the model's name in evaluation reports (default: the run folder's)"
    )
    sample.add_argument(
        "--decoder-noise",
        choices=("none", "spectral"),
        default="none",
        help="latent runs: 'spectral' adds to the decoded field noise with the VAE's residual spectrum on 32 "
        "training states, then clips (a stochastic censored decoder, docs/refiner.md); default none",
    )

    evaluate = sub.add_parser(
        "evaluate",
        help="compare samples with a split; metrics, report, figures",
        description="Scores in metrics.json / report.md, each with a 95% bootstrap interval, for every model and "
        "for the floor (validation states scored as a model, as many as the models' samples): CRPS; mean/std "
        "RMSE and bias; OOB = share of ocean values beyond the physical bounds before clipping (n/a for a "
        "censored decoder); plateau shares at sit=0, sic=0, sic=1, damage=1; PSD log-ratio = mean log10(model/test "
        "PSD) per band (>400 km, 100-400 km, <100 km; negative = too smooth) for the five variables and speed; "
        "calibration error = |generated - test| ice-cover probability (cell-weighted, unweighted, and over cells "
        "with 0 < p_test < 1); aggregates per state (extent, area, volume, MIZ area) with Wasserstein-1 and CRPS; "
        "variogram score; memorisation (copies of training states) and physical consistency. --findings decides "
        "the study's three findings (docs/evaluation.md). With --forecast FILE it scores an ensemble forecast "
        "instead, lead by lead against the data set at its valid times (RMSE of the ensemble mean, CRPS, "
        "spread-skill ratio, rank histograms, aggregates, skill against persistence and the day-of-year "
        "climatology of the training split; docs/forecast.md).",
    )
    evaluate.add_argument("--samples", nargs="*", default=[], help="sample NetCDF files")
    evaluate.add_argument("--data", required=True, help="field data set folder")
    evaluate.add_argument("--split", default="test", help="reference split (default test)")
    evaluate.add_argument(
        "--out", default=None, help="output folder (created; with --forecast default: beside it, <name>-scores)"
    )
    evaluate.add_argument(
        "--forecast",
        default=None,
        metavar="FILE.nc",
        help="score this forecast file (hpc-seaice forecast's format) against --data instead of samples",
    )
    evaluate.add_argument(
        "--climatology-window",
        type=int,
        default=15,
        metavar="DAYS",
        help="with --forecast: the climatology baseline averages the training states within this many days of "
        "year of each valid time (default 15: a 31-day window)",
    )
    evaluate.add_argument(
        "--reconstruct", nargs="*", default=[], help="autoencoder run folders (or latent diffusion runs: their VAE)"
    )
    evaluate.add_argument("--max-states", type=int, default=0, help="cap on reference states (0 = all)")
    evaluate.add_argument("--assume-units", nargs="?", const=PROJECT_UNITS, default=None, help=ASSUME_HELP)
    evaluate.add_argument(
        "--dx-km",
        type=float,
        default=None,
        help="spacing (km) of the spectrum's wavelength axis (default: the grid's mean spacing in the "
        "spectrum box, from static.h5's cell_area or lat/lon; MIZ areas and deformation always use "
        "per-cell areas and spacings)",
    )
    evaluate.add_argument(
        "--spectrum",
        choices=["tapered", "raw"],
        default="tapered",
        help="PSD estimator: tapered (default: harmonic land fill, plane removed, 2-D Hann window) or raw "
        "(the authors': mean fill, no window; edge leakage hides small-scale smoothing)",
    )
    evaluate.add_argument(
        "--step-sweep",
        default=None,
        metavar="RUN_DIR",
        help="also sample this diffusion run with 15, 30 and 60 Heun steps (half, once and twice the "
        "default; same noise) and tabulate the main scores per step count",
    )
    evaluate.add_argument(
        "--sweep-samples", type=int, default=8, help="samples per step count for --step-sweep (default 8)"
    )
    evaluate.add_argument(
        "--findings",
        default=None,
        metavar="data-space=A.nc,ldm-censored=B.nc,ldm-gaussian=C.nc[,ldm-refined=D.nc]",
        help="decide the study's three findings (competitive, smoothing, censoring_miz: holds / does not hold / "
        "undecided, against the floor and with 95%% intervals) for these three samples files (added to --samples "
        "if missing); with the optional ldm-refined (a latent path built not to smooth, docs/refiner.md) also "
        "small_scales_kept; needs a validation split",
    )
    evaluate.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap replicates of every 95%% interval (samples and states resampled, fixed seed; default 1000)",
    )


class _IntermixedParser(argparse.ArgumentParser):
    """Lets overrides follow options: ``hpc-seaice submit CONFIG --nodes 2 train.max_steps=10``.

    Plain argparse consumes every positional at its first occurrence, so ``key=value`` after an
    option would be an "unrecognized argument"; intermixed parsing collects them wherever they are.
    """

    _inside = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._inside:  # parse_known_intermixed_args calls back into parse_known_args
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def _add_cluster_commands(sub: argparse._SubParsersAction) -> None:
    submit = sub.add_parser("submit", help="submit training to SLURM through submitit")
    submit.__class__ = _IntermixedParser
    submit.add_argument("config", help="experiment YAML")
    submit.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=100")
    submit.add_argument("--nodes", type=int, default=1)
    submit.add_argument("--gpus-per-node", type=int, default=1)
    submit.add_argument("--tasks-per-node", type=int, default=0, help="default: one per GPU")
    submit.add_argument("--cpus-per-task", type=int, default=0)
    submit.add_argument("--mem", default="", help="memory per node, e.g. 64G")
    submit.add_argument("--partition", default="")
    submit.add_argument("--time", default="", help="HH:MM:SS")
    submit.add_argument("--account", default="")
    submit.add_argument("--qos", default="")
    submit.add_argument("--constraint", default="")
    submit.add_argument("--max-requeues", type=int, default=3, help="bounded automatic requeues")
    submit.add_argument(
        "--signal-delay-s",
        type=int,
        default=120,
        help="USR2 this many seconds before the time limit: checkpoint, then requeue (default 120)",
    )
    submit.add_argument("--job-name", default="", help="default: hpc-seaice-<run dir name>")
    submit.add_argument(
        "--array",
        nargs="*",
        default=[],
        help="job array: one quoted override set per element, e.g. 'train.seed=1 run.dir=runs/s1' "
        "(each element needs its own run.dir; put --array last)",
    )
    submit.add_argument("--dry-run", action="store_true", help="print the sbatch script and resolved config only")
    submit.add_argument(
        "--wait", action="store_true", help="wait for the job(s), requeues included; non-zero if one failed"
    )

    status = sub.add_parser("status", help="job state, last step and last checkpoint of a run")
    status.add_argument("run_dir", help="run folder (run.dir of the config)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpc-seaice",
        description="Distributed data-space and latent diffusion for Arctic sea ice.",
    )
    parser.add_argument("--version", action="version", version=f"hpc-seaice {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_data_commands(sub)
    _add_run_commands(sub)
    _add_cluster_commands(sub)
    return parser
