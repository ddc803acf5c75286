"""``hpc-seaice train | encode | sample``: the commands that run models, alone or under a launcher.

Each imports what it drives when it runs (torch among it), so ``hpc-seaice --help`` loads none of it.
"""

from __future__ import annotations

import argparse


def run_train(args: argparse.Namespace) -> int:
    """``hpc-seaice train CONFIG [key=value ...]``; failures become exit codes in ``run_command``."""
    from hpc_seaice.config import load_config
    from hpc_seaice.train.trainer import run_training

    return run_training(load_config(args.config, args.overrides))


def run_encode(args: argparse.Namespace) -> int:
    """``hpc-seaice encode``, on every rank of whatever launcher started it."""
    from hpc_seaice.inference.encode import encode_dataset
    from hpc_seaice.runtime.distributed import init_distributed

    env = init_distributed()
    encode_dataset(args.autoencoder, args.data, args.out, args.batch_size, args.overwrite, env)
    return 0


def run_sample(args: argparse.Namespace) -> int:
    """``hpc-seaice sample``, on every rank of whatever launcher started it."""
    from hpc_seaice.cli.options import options_for
    from hpc_seaice.inference.sample import SampleRequest, sample_run
    from hpc_seaice.runtime.distributed import init_distributed

    return sample_run(SampleRequest(**options_for(SampleRequest, args)), init_distributed())
