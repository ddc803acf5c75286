"""Evaluation: samples files (NetCDF), the paper's metrics, spectra, figures and the report.

Modules (imported directly; this package imports nothing so that ``hpc-seaice sample`` does not
pay for matplotlib): ``metrics`` (CRPS, masked RMSE/bias, bounds, MIZ), ``calibration`` (ice
cover), ``plateaus``, ``deformation`` (divergence, shear, total deformation), ``spectra``
(isotropic PSD, banded ratios), ``netcdf`` (samples files), ``plots``, ``figures``, ``report``,
``generated`` (one samples file and its ensemble-only scores), ``reconstruction`` (autoencoder
runs), ``step_sweep`` and ``evaluate`` (the ``hpc-seaice evaluate`` command). Sampling itself is
``hpc_seaice.inference.sample``.
"""
