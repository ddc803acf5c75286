"""Evaluation: sampling to NetCDF, the paper's metrics, spectra, figures and the report.

Modules (imported directly; this package imports nothing so that ``hpc-seaice sample`` does not
pay for matplotlib): ``metrics`` (CRPS, masked RMSE/bias, bounds, ice cover, MIZ, deformation),
``spectra`` (isotropic PSD), ``netcdf`` (samples files), ``plots``, ``report``, ``evaluate``
(the ``hpc-seaice evaluate`` command) and ``sample`` (the ``hpc-seaice sample`` command).
"""
