"""Using trained runs: loading a run, generation, sampling, encoding, the notebook API."""
