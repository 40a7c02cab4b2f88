"""Synthetic municipality: population, yearly records, exports in vendor formats.

The stage entry point is ``synth.stage.main(cfg, argv)`` (reports: ``reports.api``)."""
