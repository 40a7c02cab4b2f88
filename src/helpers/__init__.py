"""Mimamori: notebook workbench for child-welfare risk screening analyses.

One module per stage; data flows one way:
synth -> ingest (+ masking) -> panel (+ features) -> models -> evaluation/explain -> review -> reporting.
"""

__version__ = "0.1.0"


class MimamoriError(Exception):
    """An error the user can act on: the CLI prints its message, never a traceback."""
