"""Review: capacity list, blinded sample, reviewer workbooks, verdicts and their statistics.

The stage entry point is ``review.stage.main(cfg, argv)`` (reports: ``reports.api``)."""
