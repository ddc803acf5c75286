"""Evaluation: sampling to NetCDF, the paper's metrics, spectra, figures and the report.

Modules (imported directly; this package imports nothing so that ``hpc-seaice sample`` does not
pay for matplotlib): ``metrics`` (CRPS, masked RMSE/bias, bounds, MIZ), ``calibration`` (ice
cover), ``plateaus``, ``deformation`` (divergence, shear, total deformation), ``spectra``
(isotropic PSD, banded ratios), ``netcdf`` (samples files), ``plots``, ``figures``, ``report``,
``reconstruction``, ``step_sweep``, ``evaluate`` (the ``hpc-seaice evaluate`` command) and
``sample`` (the ``hpc-seaice sample`` command).
"""
