"""hpc-seaice: distributed training of data-space and latent diffusion models of Arctic sea ice."""

import os

# HDF5's file locking fails or serialises readers on Lustre/GPFS/NFS, and h5py refuses to open one
# file twice in a process with different locking settings: decide once, before h5py loads.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

__version__ = "0.1.0"
