"""The models stage's inputs: the panel contract, the feature matrix and catalogue lookups."""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers import MimamoriError

# panel columns copied into scores.parquet beside the scores (reports group by them)
INFO_COLUMNS = (
    "age",
    "school_age",
    "grade",
    "school_code",
    "school_district",
    "sex",
    "nationality",
    "single_parent",
    "history_incomplete",
)


def check_inputs(panel: pd.DataFrame, catalogue: pd.DataFrame, target: str) -> list[str]:
    """The feature columns (role == feature), after checking the panel contract for ``target``."""
    for col in ("name", "role"):
        if col not in catalogue.columns:
            raise MimamoriError(f"feature_catalogue.csv: column {col!r} missing")
    for col in ("child_id", "fiscal_year", f"label_{target}", f"known_{target}"):
        if col not in panel.columns:
            raise MimamoriError(f"panel.parquet: column {col!r} missing (target {target!r})")
    features = catalogue.loc[catalogue["role"] == "feature", "name"].tolist()
    missing = [f for f in features if f not in panel.columns]
    if missing:
        raise MimamoriError(
            f"panel.parquet: feature columns from the catalogue missing: {missing[:5]}"
        )
    if not features:
        raise MimamoriError("feature_catalogue.csv: no rows with role == feature")
    labels = panel[f"label_{target}"]
    bad = labels.notna() & ~labels.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise MimamoriError(
            f"panel.parquet: row {row}, column label_{target}: not 0/1/NaN "
            f"({labels[bad].iloc[0]!r})"
        )
    return features


def feature_matrix(
    panel: pd.DataFrame, features: list[str], rows: np.ndarray | None = None
) -> np.ndarray:
    """Features as float32 with NaN kept (booleans -> 0/1, nullable -> NaN); ``rows``: only the
    rows of this boolean mask (column by column: no copy of the frame's rows is made)."""
    n = len(panel) if rows is None else int(np.count_nonzero(rows))
    out = np.empty((n, len(features)), dtype=np.float32)
    for j, f in enumerate(features):
        col = panel[f]
        try:
            values = col.to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError):
            raise MimamoriError(f"panel.parquet: column {f}: not numeric ({col.dtype})") from None
        out[:, j] = values if rows is None else values[rows]
    return out


def numeric_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """One column as float64 with missing values as NaN."""
    return frame[column].to_numpy(dtype="float64", na_value=np.nan)


def catalogue_labels(catalogue: pd.DataFrame) -> dict[str, str]:
    """Feature name -> Japanese label (the name itself when the catalogue has none)."""
    lab = catalogue.get("label_ja", catalogue["name"]).fillna(catalogue["name"])
    return dict(zip(catalogue["name"], lab, strict=True))


def binary_features(catalogue: pd.DataFrame, features: list[str]) -> list[str]:
    """The features the catalogue types as binary (the single-variable candidates)."""
    if "type" not in catalogue.columns:
        return []
    binary = set(catalogue.loc[catalogue["type"] == "binary", "name"])
    return [f for f in features if f in binary]
