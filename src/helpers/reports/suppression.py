"""Small-cell suppression: the one place that decides which counts a report may show.

Results circulated outside the analysis team must not identify anyone (DOMAIN.md §6), so a
count of 1..threshold people is shown as "<{threshold+1}", and a rate computed from such a
count is hidden with it. Zero is shown: "nobody" identifies nobody.

Secondary (complementary) suppression: when a column (or a column within a ``group_by``
group) has exactly one suppressed cell, a reader who knows the column total — from a total
row in the same table or from another table in the report — could recover it by subtraction.
The smallest other positive cell of that column/group is then hidden as well (shown as "x").
If every other cell is 0 the suppressed value equals the total and nothing can hide it; keep
such breakdowns out of reports (the total itself is suppressed when it is 1..threshold).
Only columns are protected: tables should show totals as a total row, not a total column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from helpers import MimamoriError

SECONDARY_LABEL = "x"
RATE_LABEL = "*"


def small_label(threshold: int) -> str:
    """Label of a suppressed count: counts 1..9 are shown as "<10"."""
    return f"<{int(threshold) + 1}"


def _numeric_counts(df: pd.DataFrame, column: str) -> pd.Series:
    """The count column as float (NaN = missing); reject text, negatives and fractions."""
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = values.isna() & raw.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise MimamoriError(
            f"suppress_counts: row {row}, column {column!r}: {raw.iloc[row]!r} is not a count"
        )
    wrong = (values < 0) | (values.notna() & (values != np.floor(values)))
    if wrong.any():
        row = int(np.flatnonzero(wrong.to_numpy())[0])
        raise MimamoriError(
            f"suppress_counts: row {row}, column {column!r}: {values.iloc[row]} is not a "
            "non-negative whole number"
        )
    return values


def primary_mask(values: pd.Series, threshold: int) -> pd.Series:
    """True where a count is 1..threshold (the cells that must not be shown)."""
    return (values >= 1) & (values <= threshold)


def secondary_mask(
    values: pd.Series, primary: pd.Series, groups: pd.Series | None = None
) -> pd.Series:
    """Cells to hide so that a lone suppressed cell cannot be recovered from a total.

    Within each group (whole column when ``groups`` is None) holding exactly one primary
    cell, the smallest shown positive cell is chosen (ties: first row).
    """
    keys = groups if groups is not None else pd.Series(0, index=values.index)
    n_primary = primary.groupby(keys, sort=False, dropna=False).transform("sum")
    candidates = (~primary) & (values > 0) & (n_primary == 1)
    out = pd.Series(False, index=values.index)
    if not candidates.any():
        return out
    cand_values = values.where(candidates)
    # positional tie-break: the first minimal cell of each group
    order = pd.DataFrame({"k": keys.to_numpy(), "v": cand_values.to_numpy(),
                          "pos": np.arange(len(values))}).dropna(subset=["v"])
    chosen = order.sort_values(["v", "pos"], kind="stable").drop_duplicates("k", keep="first")
    out.iloc[chosen["pos"].to_numpy()] = True
    return out


def suppress_counts(
    df: pd.DataFrame,
    counts: Iterable[str],
    rates: Mapping[str, str] | None = None,
    threshold: int = 9,
    *,
    secondary: bool = True,
    group_by: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Return a display copy of ``df`` with small counts (and their rates) hidden.

    ``counts``: count columns; 1..threshold → "<threshold+1", secondary cells → "x".
    ``rates``: {rate column: count column it was computed from}; hidden ("*") with the count.
    Missing counts stay missing (a blank is not zero). Other columns are untouched.
    """
    counts = list(counts)
    rates = dict(rates or {})
    group_cols = list(group_by or [])
    for col in [*counts, *rates, *rates.values(), *group_cols]:
        if col not in df.columns:
            raise MimamoriError(f"suppress_counts: column {col!r} not in table "
                                f"(columns: {list(df.columns)})")
    for rate_col, count_col in rates.items():
        if count_col not in counts:
            raise MimamoriError(f"suppress_counts: rate {rate_col!r} refers to {count_col!r}, "
                                "which is not listed in counts")
    threshold = int(threshold)
    label = small_label(threshold)
    groups = None
    if group_cols:
        groups = df[group_cols].astype(str).agg("\x1f".join, axis=1)
    out = df.copy()
    hidden: dict[str, pd.Series] = {}
    for col in counts:
        values = _numeric_counts(df, col)
        primary = primary_mask(values, threshold)
        extra = secondary_mask(values, primary, groups) if secondary else primary & False
        shown = values.map(lambda v: pd.NA if pd.isna(v) else int(v)).astype(object)
        shown[primary] = label
        shown[extra] = SECONDARY_LABEL
        out[col] = shown
        hidden[col] = primary | extra
    for rate_col, count_col in rates.items():
        rate = out[rate_col].astype(object)
        rate[hidden[count_col]] = RATE_LABEL
        out[rate_col] = rate
    return out


def suppression_note(threshold: int, used: Iterable[str] | None = None) -> str:
    """Footnote explaining the labels (only those in ``used`` if given), Japanese + English."""
    parts = {
        small_label(threshold): f"1〜{threshold}件は秘匿（counts 1–{threshold} suppressed）",
        SECONDARY_LABEL: "差し引きで秘匿値が分からないよう秘匿（hidden so a suppressed cell "
                         "cannot be recovered from a total）",
        RATE_LABEL: "秘匿した件数から計算した率（rate of a suppressed count）",
    }
    used = set(parts) if used is None else set(used)
    shown = [f"{k}: {v}" for k, v in parts.items() if k in used]
    return "; ".join(shown) if shown else (
        f"1〜{threshold}件の値はありません（no counts of 1–{threshold}）")
