"""hpc-seaice: distributed training of data-space and latent diffusion models of Arctic sea ice.

The notebook API (imported on first use, so ``import hpc_seaice`` stays light)::

    import hpc_seaice as hs
    run = hs.open_run("demo/runs/diffusion-ldm-censored")  # any diffusion run, data space or latent
    ds = run.sample(8, steps=20, seed=0)                    # xarray.Dataset, the layout of `hpc-seaice sample`
    test = hs.open_dataset("demo/data", split="test")       # lazy xarray.Dataset over the shards
"""

import os
from typing import Any

# HDF5's file locking fails or serialises readers on Lustre/GPFS/NFS, and h5py refuses to open one
# file twice in a process with different locking settings: decide once, before h5py loads.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

__version__ = "0.1.0"
__all__ = ["open_dataset", "open_run"]


def __getattr__(name: str) -> Any:
    if name == "open_dataset":
        from hpc_seaice.data.loading.lazy import open_dataset

        return open_dataset
    if name == "open_run":
        from hpc_seaice.inference.api import open_run

        return open_run
    raise AttributeError(f"module 'hpc_seaice' has no attribute {name!r}")
