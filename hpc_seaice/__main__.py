"""`python -m hpc_seaice` is the same as the `hpc-seaice` command."""

from hpc_seaice.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
