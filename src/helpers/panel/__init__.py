"""Panel: child x fiscal-year spine, features as of 1 April, labels, feature catalogue.

The stage entry point is ``panel.stage.main(cfg, argv)`` (reports: ``reports.api``)."""
