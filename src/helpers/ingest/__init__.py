"""Ingest: read exports, validate against data_schema/, mask, write the mart; data-quality tables.

The stage entry point is ``ingest.stage.main(cfg, argv)`` (reports: ``reports.api``)."""
