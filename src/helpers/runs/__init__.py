"""Run history: every models run archived, a ledger of runs, paired comparison of two runs.

``archive`` keeps a models run under ``data/runs/<run_id>/`` and adds it to the ledger
(``data/runs/runs.parquet``); ``compare`` compares two archived runs of one target on the same
child-years; ``report`` turns a comparison into the tables of report 07; ``experiment`` is the
feature-experiment path of notebook 10; ``stage`` is ``python -m helpers runs``.
"""
