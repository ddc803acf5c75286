"""Evaluation: the paper's metrics, spectra, figures and the report, over samples files.

Modules (imported directly; this package imports nothing so that ``hpc-seaice sample`` does not
pay for matplotlib): ``metrics`` (CRPS, masked RMSE/bias, bounds, MIZ), ``calibration`` (ice
cover), ``plateaus``, ``spectra`` (isotropic PSD, banded ratios), ``findings``, ``plots``,
``figures``, ``report``, ``generated`` (one samples file and its ensemble-only scores),
``reconstruction`` (autoencoder runs), ``step_sweep`` and ``evaluate`` (the ``hpc-seaice evaluate``
command). Sampling itself is ``hpc_seaice.inference.sample``; the samples file format is
``hpc_seaice.data.format.samples_file`` and the kinematics (divergence, shear, total deformation)
``hpc_seaice.data.geo.deformation``.
"""
