"""Linkage quality against the synthetic city's truth (``_truth/identity_links.csv``).

Per source, counted over export rows: precision of the automatic links (share that point at
the true person), recall (share of rows whose person is in the registry that were linked
automatically to that person), the same for automatic + clerical links, the clerical band's
share of rows, and twins cross-linked (a wrong automatic link to a person born the same day
with the same surname as the true one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from helpers.config import Settings
from helpers.paths import Paths

LINKED_COLUMNS = ("resident_code", "link_decision", "link_reason", "candidate_code")


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


def probability_estimates(result: pd.DataFrame) -> dict[str, float | None]:
    """Precision and recall of the automatic links estimated from the model's match
    probabilities (real data has no truth): precision = mean probability of the accepted
    links; recall = expected true matches accepted / expected true matches among every
    record's best candidate. ``result``: one row per record with ``decision`` and
    ``match_probability`` (of its best candidate; NaN without one)."""
    p = result["match_probability"].astype("float64").fillna(0.0)
    auto = (result["decision"] == "auto").to_numpy()
    expected = float(p.sum())
    return {
        "est_precision": round(float(p[auto].mean()), 5) if auto.any() else None,
        "est_recall": round(float(p[auto].sum()) / expected, 5) if expected > 0 else None,
    }


# ---------------------------------------------------------------- the panel from the true links
def true_link_table(
    mart: pd.DataFrame,
    key_rows: pd.DataFrame,
    truth: pd.DataFrame,
    resident_pseudonyms: pd.Index,
    key: bytes,
    table: str,
) -> pd.DataFrame:
    """One code-less mart table as it would be with the true links.

    ``key_rows`` are the key master's rows of ``table`` (one per mart row, in mart order:
    ingest writes both from the same linked rows); the alignment is checked, never assumed.
    A row whose true person is in the mart's registry gets that person's pseudonym
    (decision ``auto``); every other row is unmatched with reason ``not_in_registry`` and no
    candidate.
    """
    from helpers import MimamoriError
    from helpers.ingest.masking import pseudonymise

    if len(key_rows) != len(mart):
        raise MimamoriError(
            f"{table}: key master has {len(key_rows)} rows, the mart {len(mart)}: the key "
            "master is not from the ingest run that wrote this mart"
        )
    km = key_rows.reset_index(drop=True)
    masked = pseudonymise(km["resident_code"], key, "resident")
    same = masked.fillna("").to_numpy() == mart["resident_code"].astype("string").fillna("")
    same &= km["decision"].to_numpy() == mart["link_decision"].astype(str).to_numpy()
    if not same.all():
        raise MimamoriError(
            f"{table}: mart row {int((~same).argmax())} does not match the key master's row "
            "(resident code or decision differ): not the same ingest run, or another key"
        )
    t = truth[truth["table"] == table].rename(columns={"resident_code": "true_code"})
    t = t.astype({"source_row": "int64"})
    km = km.astype({"source_row": "int64"})
    true = km.merge(
        t[["file", "source_row", "true_code"]],
        on=["file", "source_row"],
        how="left",
        validate="one_to_one",
    )["true_code"]
    code = pseudonymise(true, key, "resident")
    code = code.where(code.isin(resident_pseudonyms))
    out = mart.copy()
    out["resident_code"] = code.to_numpy()
    out["link_decision"] = np.where(code.notna(), "auto", "unmatched")
    out["link_reason"] = pd.Series("not_in_registry", index=out.index, dtype="string").where(
        code.isna().to_numpy()
    )
    out["candidate_code"] = pd.Series([None] * len(out), dtype="string").to_numpy()
    return out.astype({c: mart[c].dtype for c in LINKED_COLUMNS if c in mart})


def true_link_mart(
    mart: dict[str, pd.DataFrame],
    key_master: pd.DataFrame,
    truth: pd.DataFrame,
    key: bytes,
    tables: list[str],
) -> dict[str, pd.DataFrame]:
    """The mart with every code-less table in ``tables`` carrying the true links."""
    res = pd.Index(mart["residents"]["resident_code"].dropna().astype(str).unique())
    out = dict(mart)
    for t in tables:
        rows = key_master[key_master["table"] == t]
        out[t] = true_link_table(mart[t], rows, truth, res, key, t)
    return out


def feature_agreement(linked: pd.DataFrame, true: pd.DataFrame, columns: list[str]) -> dict:
    """Share of child-years (``child_id``, ``fiscal_year``) whose ``columns`` are all equal in
    the two panels (NaN equals NaN), overall and per column, and how the others differ."""
    keys = ["child_id", "fiscal_year"]
    m = linked[keys + columns].merge(
        true[keys + columns], on=keys, how="outer", suffixes=("", "_true"), indicator=True
    )
    both = (m["_merge"] == "both").to_numpy()
    equal = np.ones(len(m), dtype=bool) & both
    per: dict[str, float | None] = {}
    unknown_not_true = np.zeros(len(m), dtype=bool)
    for c in columns:
        a, b = m[c].to_numpy(dtype="float64"), m[f"{c}_true"].to_numpy(dtype="float64")
        eq = (a == b) | (np.isnan(a) & np.isnan(b))
        per[c] = _ratio(int((eq & both).sum()), int(both.sum()))
        unknown_not_true |= np.isnan(a) & ~np.isnan(b)
        equal &= eq
    differ = both & ~equal
    return {
        "child_years": int(len(m)),
        "child_years_in_one_panel_only": int((~both).sum()),
        "equal": int(equal.sum()),
        "share_equal": _ratio(int(equal.sum()), len(m)),
        "differ_with_linked_unknown": int((differ & unknown_not_true).sum()),
        "per_feature": per,
    }


def code_less_columns(cfg: Settings) -> list[str]:
    """The panel's features fed by a code-less (``link_by``) source."""
    from helpers.panel.features import LINKED_SOURCES, feature_registry

    return [
        s.name
        for s in feature_registry(cfg)
        if s.role == "feature" and set(s.source_tables) & set(LINKED_SOURCES)
    ]


def code_less_features(
    mart: dict[str, pd.DataFrame], cfg: Settings, absent: tuple[str, ...] = ()
) -> pd.DataFrame:
    """The code-less sources' panel columns for every fiscal year (child_id, fiscal_year and
    the columns of ``code_less_columns``), computed exactly as the panel stage does."""
    from helpers.panel import features as F
    from helpers.panel.coverage import blank_absent, source_coverage
    from helpers.panel.stage import (
        as_of_date,
        decode,
        encode_keys,
        predictor_tables,
        resident_spine,
    )

    coverage = source_coverage(mart, absent, cfg)
    encoded, decoders = encode_keys(mart)
    tables = predictor_tables(encoded)
    sources = {s.name: s.source_tables for s in F.feature_registry(cfg)}
    parts = []
    for fy in cfg.run.fiscal_years:
        on = as_of_date(fy, cfg.panel)
        spine = resident_spine(tables["residents"], fy, cfg.panel)
        f = F.linked_source_features(spine, tables, on, fy, cfg.panel, coverage)
        f = blank_absent(f, sources, coverage.absent).rename_axis("child_id").reset_index()
        f["child_id"] = decode(f["child_id"], decoders["resident_code"])
        f.insert(1, "fiscal_year", fy)
        parts.append(f)
    return pd.concat(parts, ignore_index=True)[["child_id", "fiscal_year", *code_less_columns(cfg)]]
