"""Linkage quality against the synthetic city's truth (``_truth/identity_links.csv``).

Per source, counted over export rows: precision of the automatic links (share that point at
the true person), recall (share of rows whose person is in the registry that were linked
automatically to that person), the same for automatic + clerical links, the clerical band's
share of rows, and twins cross-linked (a wrong automatic link to a person born the same day
with the same surname as the true one).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from helpers.paths import Paths


def read_truth(raw_dir: Path, P: Paths) -> pd.DataFrame | None:
    path = Path(raw_dir) / P.truth.name / P.truth_identity.name
    if not path.exists():
        return None
    return pd.read_csv(path, dtype={"resident_code": "string", "file": "string"})


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 5) if den else None


def truth_metrics(
    filled: pd.DataFrame, raw_dir: Path, residents: pd.DataFrame, P: Paths
) -> dict | None:
    """Precision, recall, clerical share and twin errors of one linked table (rows)."""
    truth = read_truth(raw_dir, P)
    if truth is None:
        return None
    t = truth.rename(columns={"resident_code": "true_code", "file": "source_file"})
    m = filled[["source_file", "source_row", "resident_code", "link_decision", "link_reason"]]
    m = m.merge(
        t[["source_file", "source_row", "true_code"]], on=["source_file", "source_row"], how="left"
    )
    known = set(residents["resident_code"].dropna())
    in_reg = m["true_code"].notna() & m["true_code"].isin(known)
    auto = m["link_decision"] == "auto"
    linked = m["link_decision"].isin(["auto", "clerical"])
    right = m["resident_code"] == m["true_code"]
    reg = residents.drop_duplicates("resident_code").set_index("resident_code")
    wrong = m[auto & ~right.fillna(False)]
    surname = reg["name_kana"].astype(str).str.split(r"[\s　]").str[0]
    twin = (
        reg["birth_date"].reindex(wrong["resident_code"]).to_numpy()
        == reg["birth_date"].reindex(wrong["true_code"]).to_numpy()
    ) & (
        surname.reindex(wrong["resident_code"]).to_numpy()
        == surname.reindex(wrong["true_code"]).to_numpy()
    )
    return {
        "rows": int(len(m)),
        "rows_person_in_registry": int(in_reg.sum()),
        "auto_precision": _ratio(int((auto & right.fillna(False)).sum()), int(auto.sum())),
        "auto_recall": _ratio(int((auto & right.fillna(False) & in_reg).sum()), int(in_reg.sum())),
        "linked_precision": _ratio(int((linked & right.fillna(False)).sum()), int(linked.sum())),
        "linked_recall": _ratio(
            int((linked & right.fillna(False) & in_reg).sum()), int(in_reg.sum())
        ),
        "clerical_band_share": _ratio(
            int(
                m["link_reason"].isin(["clerical_pending", "ambiguous"]).sum()
                + (m["link_decision"] == "clerical").sum()
            ),
            len(m),
        ),
        "wrong_auto_links": int(len(wrong)),
        "twins_cross_linked": int(twin.sum()),
        "not_in_registry_linked": int((linked & m["true_code"].isna()).sum()),
    }
