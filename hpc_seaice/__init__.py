"""hpc-seaice: distributed training of data-space and latent diffusion models of Arctic sea ice.

The notebook API (imported on first use, so ``import hpc_seaice`` stays light)::

    import hpc_seaice as hs
    test = hs.open_dataset("demo/data", split="test")   # lazy xarray.Dataset over the shards
"""

import os
from typing import Any

# HDF5's file locking fails or serialises readers on Lustre/GPFS/NFS, and h5py refuses to open one
# file twice in a process with different locking settings: decide once, before h5py loads.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

__version__ = "0.1.0"
__all__ = ["open_dataset"]


def __getattr__(name: str) -> Any:
    if name == "open_dataset":
        from hpc_seaice.data.lazy import open_dataset

        return open_dataset
    raise AttributeError(f"module 'hpc_seaice' has no attribute {name!r}")
