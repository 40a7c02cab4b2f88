"""Data-quality figures for notebooks/01_data_quality.py, computed from the mart and the report.

Everything here reads pseudonymised mart tables and the ingest report (never the rejects'
values or the raw exports), and returns counts that the report shows through
``helpers.reporting.show_table`` (which suppresses small cells).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import MimamoriError
from helpers.schema import TableSchema


def load_report(mart_dir: str | Path) -> dict:
    path = Path(mart_dir) / "_ingest_report.json"
    if not path.exists():
        raise MimamoriError(f"{path}: no ingest report; run `python -m helpers ingest` first")
    return json.loads(path.read_text(encoding="utf-8"))


def load_mart(mart_dir: str | Path, tables: list[str]) -> dict[str, pd.DataFrame]:
    """The mart tables that exist (absent optional tables are simply left out)."""
    out = {}
    for t in tables:
        p = Path(mart_dir) / f"{t}.parquet"
        if p.exists():
            out[t] = pd.read_parquet(p)
    return out


def table_summary(report: dict) -> pd.DataFrame:
    """One row per table: rows in/out/rejected, exact duplicates dropped, the commonest reason."""
    rows = []
    for table, t in sorted(report.get("tables", {}).items()):
        reasons = t.get("reasons", {})
        top = max(reasons, key=reasons.get) if reasons else ""
        rows.append({"table": table, "rows_in": t["rows_in"], "rows_out": t["rows_out"],
                     "rows_rejected": t["rows_rejected"],
                     "duplicates_dropped": t["duplicates_dropped"],
                     "reject_rate": t["rows_rejected"] / t["rows_in"] if t["rows_in"] else np.nan,
                     "top_reason": top,
                     "unknown_headers": ", ".join(t.get("unknown_headers", []))})
    return pd.DataFrame(rows)


def reason_counts(report: dict) -> pd.DataFrame:
    """Long table (table, reason, rows) of reject reasons; duplicates_dropped as duplicate_exact."""
    rows = []
    for table, t in sorted(report.get("tables", {}).items()):
        for reason, n in sorted(t.get("reasons", {}).items()):
            rows.append({"table": table, "reason": reason, "rows": int(n)})
        if t.get("duplicates_dropped"):
            rows.append({"table": table, "reason": "duplicate_exact", "rows": int(t["duplicates_dropped"])})
    return pd.DataFrame(rows, columns=["table", "reason", "rows"])


def missingness(mart: dict[str, pd.DataFrame], schemas: dict[str, TableSchema]) -> pd.DataFrame:
    """Per column: blank cells split by what a blank means (unknown vs none) and zero values.

    A blank in a ``missing: unknown`` column is information not recorded; in a ``missing: none``
    column it means no such event (open end date). Zero is counted separately: it is a value.
    """
    rows = []
    for table, df in mart.items():
        schema = schemas[table]
        for f in schema.mart_fields:
            if f.name not in df.columns:
                continue
            col = df[f.name]
            blank = int(col.isna().sum())
            zero = int((pd.to_numeric(col, errors="coerce") == 0).sum()) if f.type in ("int", "float") else 0
            rows.append({
                "table": table, "column": f.name, "rule": f.missing, "rows": len(df),
                "blank_unknown": blank if f.missing == "unknown" else 0,
                "blank_none": blank if f.missing == "none" else 0,
                "zero": zero,
                "blank_share": blank / len(df) if len(df) else np.nan,
            })
    return pd.DataFrame(rows, columns=["table", "column", "rule", "rows", "blank_unknown",
                                       "blank_none", "zero", "blank_share"])


def fiscal_year(dates: pd.Series) -> pd.Series:
    """Japanese fiscal year (April to March) of each date; <NA> for NaT."""
    d = pd.to_datetime(dates)
    fy = d.dt.year - (d.dt.month < 4).astype(int)
    return fy.astype("Int64")


def date_coverage(mart: dict[str, pd.DataFrame], schemas: dict[str, TableSchema],
                  fiscal_years: list[int] | None = None) -> pd.DataFrame:
    """Records per table, date column and fiscal year (wide: one column per fiscal year)."""
    parts = []
    for table, df in mart.items():
        for f in schemas[table].mart_fields:
            if f.type != "date" or f.name not in df.columns or f.masking == "birth_month":
                continue
            fy = fiscal_year(df[f.name]).dropna()
            if fiscal_years:
                fy = fy[fy.isin(fiscal_years)]
            counts = fy.value_counts()
            for year, n in counts.items():
                parts.append({"table": table, "column": f.name, "fiscal_year": int(year), "records": int(n)})
    long = pd.DataFrame(parts, columns=["table", "column", "fiscal_year", "records"])
    if long.empty:
        return long
    wide = long.pivot_table(index=["table", "column"], columns="fiscal_year", values="records",
                            aggfunc="sum", fill_value=0)
    wide.columns = [f"FY{c}" for c in wide.columns]
    return wide.reset_index()


def in_mover_share(residents: pd.DataFrame, fiscal_years: list[int]) -> pd.DataFrame:
    """Per fiscal year: residents registered at some point in the year, and how many moved in
    (non-blank move-in date) — for them, earlier records are missing, not zero."""
    start = pd.to_datetime([f"{y}-04-01" for y in fiscal_years])
    end = pd.to_datetime([f"{y + 1}-03-31" for y in fiscal_years])
    born = residents["birth_date"].to_numpy(dtype="datetime64[ns]")
    left = residents["move_out_date"].fillna(residents["death_date"]).to_numpy(dtype="datetime64[ns]")
    moved_in = residents["move_in_date"].to_numpy(dtype="datetime64[ns]")
    rows = []
    for y, s, e in zip(fiscal_years, start, end, strict=True):
        arrived = np.where(np.isnat(moved_in), born, moved_in)
        present = (arrived <= e.to_datetime64()) & (np.isnat(left) | (left >= s.to_datetime64()))
        n = int(present.sum())
        movers = int((present & ~np.isnat(moved_in)).sum())
        rows.append({"fiscal_year": y, "residents": n, "in_movers": movers,
                     "in_mover_share": movers / n if n else np.nan})
    return pd.DataFrame(rows)


def _resident_link(table: str, mart: dict[str, pd.DataFrame], schemas: dict[str, TableSchema]) -> pd.Series | None:
    """Each record's resident pseudonym: its own resident_code, else through a reference."""
    df = mart[table]
    if "resident_code" in df.columns:
        own = df["resident_code"]
    else:
        own = pd.Series(pd.NA, index=df.index, dtype="string")
    for fname, target in schemas[table].references.items():
        ref_table, ref_field = target.split(".", 1)
        if fname == "resident_code" or ref_table not in mart or "resident_code" not in mart[ref_table]:
            continue
        bridge = mart[ref_table][[ref_field, "resident_code"]].dropna().drop_duplicates(ref_field)
        via = df[[fname]].merge(bridge, left_on=fname, right_on=ref_field, how="left")["resident_code"]
        own = own.fillna(pd.Series(via.to_numpy(), index=df.index, dtype="string"))
    if "resident_code" not in df.columns and own.isna().all():
        return None
    return own


def linkage_rate(mart: dict[str, pd.DataFrame], schemas: dict[str, TableSchema]) -> pd.DataFrame:
    """Share of each table's records whose person links to the resident registry.

    Records without a resident code use the table's references (school attendance → school
    register by student number). Tables keyed only by household are reported through the
    household history.
    """
    if "residents" not in mart:
        raise MimamoriError("linkage rate needs the residents table in the mart")
    known = set(mart["residents"]["resident_code"].dropna())
    households = set()
    if "household_history" in mart:
        households = set(mart["household_history"]["household_code"].dropna())
    rows = []
    for table, df in sorted(mart.items()):
        if table == "residents":
            continue
        link = _resident_link(table, mart, schemas)
        if link is not None:
            linked = int(link.isin(known).sum())
            blank = int(link.isna().sum())
            key = "resident_code"
        elif "household_code" in df.columns:
            linked = int(df["household_code"].isin(households).sum())
            blank = int(df["household_code"].isna().sum())
            key = "household_code"
        else:
            continue
        rows.append({"table": table, "key": key, "records": len(df), "key_blank": blank,
                     "linked": linked, "linkage_rate": linked / len(df) if len(df) else np.nan})
    return pd.DataFrame(rows, columns=["table", "key", "records", "key_blank", "linked", "linkage_rate"])


def masking_summary(report: dict) -> pd.DataFrame:
    """What top-coding did per field: bounds and how many values each bound changed."""
    rows = []
    for table, t in sorted(report.get("tables", {}).items()):
        for fname, info in sorted(t.get("topcode", {}).items()):
            rows.append({"table": table, "column": fname, "lower": info.get("lower"),
                         "upper": info.get("upper"), "values": info.get("n_values", 0),
                         "clipped_low": info.get("n_lower", 0), "clipped_high": info.get("n_upper", 0)})
    return pd.DataFrame(rows, columns=["table", "column", "lower", "upper", "values",
                                       "clipped_low", "clipped_high"])
