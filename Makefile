# Everything a user or CI needs; each target installs what it needs first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DS_BUILD_OPS := 0
export DS_ACCELERATOR ?= cpu
export HDF5_USE_FILE_LOCKING := FALSE

.PHONY: install demo demo-clean test lint format bench clean coastline docs numbers

# torch is pinned in the same pip command as deepspeed: on its own deepspeed resolves a
# multi-GB CUDA torch. On a GPU cluster, see docs/getting_started.md "On a GPU cluster".
# The list must name every requirement of setup.py (tests/test_install.py checks it): the package
# itself is installed with --no-deps so that pip cannot re-resolve torch.
$(STAMP): setup.py Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 deepspeed mpi4py h5py h5netcdf xarray dask zarr submitit tensorboard \
	    numpy scipy matplotlib tqdm pyyaml pydantic pint cf-xarray pytest ruff netCDF4 mkdocs mkdocs-material mkdocstrings-python
	$(PY) -m pip install -q --no-deps -e '.[dev]'
	$(PY) -m pip install -q mpich  # the MPI runtime (libmpi, mpiexec) that mpi4py loads
	touch $(STAMP)

install: $(STAMP)

# Rebuild the committed coastline (hpc_seaice/data/coastline.npz) from the GLOBE land mask; the
# optional extra is needed only here (its import loads about 0.9 GB), never by tests or the demo.
coastline: install
	$(PY) -m pip install -q global-land-mask
	$(PY) -m hpc_seaice.data.geo.coastline --regenerate

demo: install
	$(PY) -m hpc_seaice.demo

demo-clean:
	rm -rf demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The documentation site, into site/ (git-ignored). --strict: a broken link, a page left out of the
# nav or an API object that cannot be found fails the build. The measured numbers the pages quote
# are rendered from benchmarks/results/*.json first (`make numbers` alone does only that).
numbers: install
	$(PY) docs/render_numbers.py

docs: numbers
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

bench: install
	$(PY) -m benchmarks

clean: demo-clean
	rm -rf $(VENV) *.egg-info site
