"""Models: baselines, weighted models tuned for precision at k, evaluation, explanation.

The stage entry point is ``models.stage.main(cfg, argv)`` (reports: ``reports.api``)."""
