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


def assign(
    pairs: pd.DataFrame, records: pd.Index, link: LinkSettings, decided: pd.DataFrame
) -> pd.DataFrame:
    """One row per record id (``records``): resident code or none, decision, reason, the best
    candidate of an unmatched record, and the pairs still awaiting a clerical decision.

    ``decided``: record_id, resident_code, decision (same / different) from staff.
    """
    different = set(
        zip(
            decided.loc[decided["decision"] == "different", "record_id"],
            decided.loc[decided["decision"] == "different", "resident_code"],
            strict=True,
        )
    )
    same = decided[decided["decision"] == "same"].groupby("record_id")["resident_code"].agg(set)
    keep = [
        (r, c) not in different
        for r, c in zip(pairs["record_id"], pairs["resident_code"], strict=True)
    ]
    ranked = pairs[keep].sort_values(
        ["record_id", "match_weight", "resident_code"], ascending=[True, False, True], kind="stable"
    )
    groups = dict(iter(ranked.groupby("record_id", sort=False)))
    rejected = {r for r, _ in different}
    empty = ranked.iloc[:0]
    rows = []
    for rid in records:
        out = _one(groups.get(rid, empty), link, same.get(rid, set()))
        if out["reason"] == "no_candidate" and rid in rejected:
            out["reason"] = "judged_different"
        rows.append({"record_id": rid, **out})
    frame = pd.DataFrame(rows)
    for c in ASSIGN_COLUMNS:
        if c not in frame:
            frame[c] = None
    return frame[ASSIGN_COLUMNS]
