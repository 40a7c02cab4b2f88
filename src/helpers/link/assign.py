"""From scored pairs to one decision per source record: thresholds, margins, twins, staff
decisions.

A source record can be only one child. Its best candidate is linked automatically when its
probability reaches ``link.accept_probability`` and it beats the second best by
``link.margin_weight`` match-weight units. When it does not (twins, siblings with similar
names) the tie is resolved by given name and sex only — the best candidate must agree on the
given name (top level) and sex where the second does not — never by the order of the rows;
otherwise both pairs go to clerical review. Between ``clerical_probability`` and
``accept_probability`` a pair goes to clerical review; below it the record is unmatched. A
staff decision (同一 / 別人) on a pair overrides the model and is never asked again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.config import LinkSettings

DECISIONS = ("auto", "clerical", "unmatched")
REASONS = (
    "no_birth_date",
    "no_identity",
    "no_candidate",
    "below_threshold",
    "clerical_pending",
    "ambiguous",
    "judged_different",
)
ASSIGN_COLUMNS = [
    "record_id",
    "resident_code",
    "match_probability",
    "match_weight",
    "decision",
    "reason",
    "candidate_code",
    "pending",
]


def _given_top(row: pd.Series) -> bool:
    gamma = row.get("gamma_given_kana")
    return gamma is not None and not pd.isna(gamma) and int(gamma) == 3


def _resolves(best: pd.Series, second: pd.Series) -> bool:
    """Twins/siblings: the best wins only on given name or sex, where the second does not."""
    given = _given_top(best) and not _given_top(second)
    sex = best.get("gamma_sex") == 1 and second.get("gamma_sex") == 0
    return bool(given or sex)


def _one(cands: pd.DataFrame, link: LinkSettings, same: set[str]) -> dict:
    """The decision for one record from its candidates (best first); ``same``: resident codes
    staff judged 同一 for it."""
    if same:
        hit = cands[cands["resident_code"].isin(same)]
        best = hit.iloc[0] if len(hit) else None
        code = best["resident_code"] if best is not None else sorted(same)[0]
        return {
            "resident_code": code,
            "decision": "clerical",
            "reason": None,
            "match_probability": float(best["match_probability"]) if best is not None else np.nan,
            "match_weight": float(best["match_weight"]) if best is not None else np.nan,
            "pending": [],
        }
    if cands.empty:
        return {"decision": "unmatched", "reason": "no_candidate", "pending": []}
    best = cands.iloc[0]
    p, w = float(best["match_probability"]), float(best["match_weight"])
    base = {"match_probability": p, "match_weight": w}
    second = cands.iloc[1] if len(cands) > 1 else None
    clear = second is None or w - float(second["match_weight"]) >= link.margin_weight
    if p >= link.accept_probability and (clear or _resolves(best, second)):
        return {
            **base,
            "resident_code": best["resident_code"],
            "decision": "auto",
            "reason": None,
            "pending": [],
        }
    if p >= link.clerical_probability:
        band = cands[cands["match_probability"] >= link.clerical_probability]
        reason = "clerical_pending" if clear else "ambiguous"
        return {
            **base,
            "decision": "unmatched",
            "reason": reason,
            "candidate_code": best["resident_code"],
            "pending": list(band["resident_code"].head(3)),
        }
    out = {**base, "decision": "unmatched", "reason": "below_threshold", "pending": []}
    if p >= link.candidate_floor:
        out["candidate_code"] = best["resident_code"]
    return out


def _gamma_top(col: pd.Series | None, level: int, n: int) -> np.ndarray:
    if col is None:
        return np.zeros(n, dtype=bool)
    return (pd.to_numeric(col, errors="coerce") == level).fillna(False).to_numpy(dtype=bool)


def _vectorised(ranked: pd.DataFrame, link: LinkSettings) -> pd.DataFrame:
    """``_one`` for every record with candidates and no staff decision, as array operations
    (a 500,000-child city has ~500,000 records): one row per record id, same answers."""
    rank = ranked.groupby("record_id", sort=False).cumcount().to_numpy()
    best = ranked[rank == 0].set_index("record_id")
    second = ranked[rank == 1].set_index("record_id").reindex(best.index)
    n = len(best)
    p = best["match_probability"].astype("float64").to_numpy()
    w = best["match_weight"].astype("float64").to_numpy()
    has2 = second["match_weight"].notna().to_numpy()
    clear = ~has2 | (w - second["match_weight"].astype("float64").to_numpy() >= link.margin_weight)
    given = _gamma_top(best.get("gamma_given_kana"), 3, n) & ~_gamma_top(
        second.get("gamma_given_kana"), 3, n
    )
    sex = _gamma_top(best.get("gamma_sex"), 1, n) & _gamma_top(second.get("gamma_sex"), 0, n)
    auto = (p >= link.accept_probability) & (clear | (has2 & (given | sex)))
    band = ~auto & (p >= link.clerical_probability)
    below = ~auto & ~band
    codes = best["resident_code"].astype("object").to_numpy()
    reason = np.full(n, "below_threshold", dtype=object)
    reason[band] = np.where(clear[band], "clerical_pending", "ambiguous")
    reason[auto] = None
    out = pd.DataFrame(
        {
            "resident_code": np.where(auto, codes, None),
            "match_probability": p,
            "match_weight": w,
            "decision": np.where(auto, "auto", "unmatched").astype(object),
            "reason": reason,
            "candidate_code": np.where(band | (below & (p >= link.candidate_floor)), codes, None),
        },
        index=best.index,
    )
    in_band = ranked[
        ranked["record_id"].isin(best.index[band])
        & (ranked["match_probability"] >= link.clerical_probability)
    ]
    pend = in_band.groupby("record_id", sort=False)["resident_code"].agg(lambda c: list(c[:3]))
    lists = pend.to_dict()
    out["pending"] = pd.Series([lists.get(r) or [] for r in out.index], index=out.index)
    return out


def assign(
    pairs: pd.DataFrame, records: pd.Index, link: LinkSettings, decided: pd.DataFrame
) -> pd.DataFrame:
    """One row per record id (``records``): resident code or none, decision, reason, the best
    candidate of an unmatched record, and the pairs still awaiting a clerical decision.

    ``decided``: record_id, resident_code, decision (same / different) from staff.
    """
    diff = decided[decided["decision"] == "different"]
    different = pd.MultiIndex.from_arrays([diff["record_id"], diff["resident_code"]])
    same = decided[decided["decision"] == "same"].groupby("record_id")["resident_code"].agg(set)
    keep = ~pd.MultiIndex.from_arrays([pairs["record_id"], pairs["resident_code"]]).isin(different)
    ranked = pairs[keep].sort_values(
        ["record_id", "match_weight", "resident_code"], ascending=[True, False, True], kind="stable"
    )
    staff = ranked["record_id"].isin(same.index)
    frame = _vectorised(ranked[~staff], link).reindex(records)
    frame.index.name = "record_id"
    none = frame["decision"].isna().to_numpy()
    rejected = set(diff["record_id"])
    frame.loc[none, "decision"] = "unmatched"
    frame.loc[none, "reason"] = [
        "judged_different" if r in rejected else "no_candidate" for r in frame.index[none]
    ]
    frame["pending"] = [v if isinstance(v, list) else [] for v in frame["pending"]]
    for rid in [r for r in records if r in same.index]:
        for k, v in _one(ranked[ranked["record_id"] == rid], link, same[rid]).items():
            frame.at[rid, k] = v
    frame = frame.reset_index()
    return frame[ASSIGN_COLUMNS]
