"""The synthetic city's truth joined to pseudonyms: the oracle every evaluation compares with.

The generator writes ``true_probabilities.parquet`` keyed by the *real* resident code. The
analysis only knows pseudonyms, so the truth is re-keyed here, once, with the same keyed hash
ingest used (``masking.pseudonym`` with domain ``resident``); real codes never leave this
module. Only on the synthetic city: real data has no truth, and every caller gets ``None``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from helpers import MimamoriError
from helpers.config import Settings
from helpers.ingest import masking
from helpers.paths import paths

TRUTH_COLUMNS = ("resident_code", "fiscal_year", "target", "p")


def truth_path(cfg: Settings) -> Path:
    return paths(cfg).truth_probabilities


def load_truth(cfg: Settings) -> pd.DataFrame | None:
    """Every child-year's true probability keyed by pseudonym: ``child_id, fiscal_year, target,
    p``; ``None`` on real data or when the generator wrote no truth."""
    path = truth_path(cfg)
    if not cfg.run.synthetic or not path.exists():
        return None
    truth = pd.read_parquet(path)
    missing = [c for c in TRUTH_COLUMNS if c not in truth.columns]
    if missing:
        raise MimamoriError(f"{path}: missing column(s) {missing}")
    key, _source = masking.load_key(cfg)
    return pseudonymise(truth, key)


def pseudonymise(truth: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """Replace ``resident_code`` by ``child_id`` (the resident pseudonym under ``key``)."""
    codes = truth["resident_code"].astype(str)
    mapping = {c: masking.pseudonym(c, key, "resident") for c in codes.unique()}
    out = truth.drop(columns=["resident_code"])
    out.insert(0, "child_id", codes.map(mapping).to_numpy())
    return out


def truth_for(truth: pd.DataFrame | None, target: str) -> pd.DataFrame | None:
    """One target's truth: ``child_id, fiscal_year, p`` with one row per child-year."""
    if truth is None:
        return None
    t = truth[truth["target"] == target] if "target" in truth.columns else truth
    return t[["child_id", "fiscal_year", "p"]].drop_duplicates(["child_id", "fiscal_year"])


def attach(
    frame: pd.DataFrame, truth: pd.DataFrame | None, target: str, column: str = "oracle_p"
) -> pd.DataFrame:
    """``frame`` (with child_id, fiscal_year) with the true probability as ``column`` (left join:
    NaN where the generator has no probability for that child-year)."""
    t = truth_for(truth, target)
    if t is None:
        return frame
    return frame.merge(t.rename(columns={"p": column}), on=["child_id", "fiscal_year"], how="left")
