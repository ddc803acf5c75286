"""Install hpc-seaice. torch is pinned by `make install` (see docs/getting_started.md: CPU and CUDA installs)."""

from setuptools import find_packages, setup

setup(
    name="hpc-seaice",
    version="0.1.0",
    description="Distributed data-space and latent diffusion models of Arctic-wide sea ice",
    packages=find_packages(include=["hpc_seaice", "hpc_seaice.*"]),
    # the real coastline on the model grid, made by `make coastline` (see hpc_seaice/data/geo/coastline.py)
    package_data={
        "hpc_seaice.data.geo": ["coastline.npz"],
        # network presets (`preset: NAME` in a unet/vae section), loaded by name at run time
        "hpc_seaice": ["presets/*.yaml"],
    },
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "deepspeed>=0.15",
        "mpi4py>=3.1",
        "h5py>=3.8",
        "h5netcdf>=1.1",
        "xarray>=2023.1",
        "dask>=2023.1",
        "zarr>=2.16",
        "submitit>=1.5",
        "tensorboard>=2.14",
        "numpy>=1.24",
        "scipy>=1.10",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "pyyaml>=6.0",
        "pydantic>=2.0",
        "pint>=0.24",  # units of inputs and samples files (data convert, evaluate)
        "cf-xarray>=0.10",  # its pint registry reads CF unit strings (m s-1, %, 1)
    ],
    extras_require={
        # netCDF4: the tests read the NetCDF we write with a second library; mkdocs and its plugins
        # build the documentation site (`make docs`; the tests build it with --strict)
        "dev": [
            "pytest>=7",
            "ruff>=0.5",
            "netCDF4>=1.6",
            "mkdocs>=1.6",
            "mkdocs-material>=9.5",
            "mkdocstrings-python>=1.10",
        ],
        # only to regenerate hpc_seaice/data/coastline.npz; importing it loads about 0.9 GB
        "coastline": ["global-land-mask>=1.0"],
    },
    entry_points={"console_scripts": ["hpc-seaice=hpc_seaice.cli:main"]},
)
