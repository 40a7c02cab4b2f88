"""Data-quality figures for notebooks/01_data_quality.py, computed from the mart and the report.

Everything here reads pseudonymised mart tables and the ingest report (never the rejects'
values or the raw exports), and returns counts that the report shows through
``helpers.reporting.show_table`` (which suppresses small cells).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import MimamoriError
from helpers.paths import MartPaths
from helpers.schema import TableSchema


def load_report(mart_dir: str | Path) -> dict:
    path = MartPaths(Path(mart_dir)).report
    if not path.exists():
        raise MimamoriError(f"{path}: no ingest report; run `python -m helpers ingest` first")
    return json.loads(path.read_text(encoding="utf-8"))


def load_mart(mart_dir: str | Path, tables: list[str]) -> dict[str, pd.DataFrame]:
    """The mart tables that exist (absent optional tables are simply left out)."""
    out = {}
    for t in tables:
        p = MartPaths(Path(mart_dir)).table(t)
        if p.exists():
            out[t] = pd.read_parquet(p)
    return out


def table_summary(report: dict) -> pd.DataFrame:
    """One row per table: rows in/out/rejected, exact duplicates dropped, the commonest reason,
    and the bad cells of optional fields that were blanked (their rows kept)."""
    rows = []
    for table, t in sorted(report.get("tables", {}).items()):
        reasons = t.get("reasons", {})
        top = max(reasons, key=reasons.get) if reasons else ""
        rows.append(
            {
                "table": table,
                "rows_in": t["rows_in"],
                "rows_out": t["rows_out"],
                "rows_rejected": t["rows_rejected"],
                "duplicates_dropped": t["duplicates_dropped"],
                "reject_rate": t["rows_rejected"] / t["rows_in"] if t["rows_in"] else np.nan,
                "top_reason": top,
                "cells_blanked": int(sum(t.get("cell_warnings", {}).values())),
                "unknown_headers": ", ".join(t.get("unknown_headers", [])),
            }
        )
    return pd.DataFrame(rows)


def reason_counts(report: dict) -> pd.DataFrame:
    """Long table (table, reason, rows) of reject reasons; duplicates_dropped as duplicate_exact."""
    rows = []
    for table, t in sorted(report.get("tables", {}).items()):
        for reason, n in sorted(t.get("reasons", {}).items()):
            rows.append({"table": table, "reason": reason, "rows": int(n)})
        if t.get("duplicates_dropped"):
            rows.append(
                {"table": table, "reason": "duplicate_exact", "rows": int(t["duplicates_dropped"])}
            )
    return pd.DataFrame(rows, columns=["table", "reason", "rows"])


def cell_warning_counts(report: dict) -> pd.DataFrame:
    """Bad values in optional fields (table, column, reason, cells): blanked, rows kept."""
    rows = []
    for table, t in sorted(report.get("tables", {}).items()):
        for key, n in sorted(t.get("cell_warnings_by_column", {}).items()):
            column, reason = key.rsplit(":", 1)
            rows.append({"table": table, "column": column, "reason": reason, "cells": int(n)})
    return pd.DataFrame(rows, columns=["table", "column", "reason", "cells"])


def _shown_value(value: str, limit: int = 30) -> str:
    """An unmapped value as a report may show it: digit runs hidden, long text shortened."""
    text = re.sub(r"\d{4,}", "<digits>", str(value))
    return text if len(text) <= limit else text[:limit] + "…"


def unmapped_values(report: dict) -> pd.DataFrame:
    """Spellings that matched no code (table, field, value, rows, what happened to the rows):
    the starting point of a value map (``python -m helpers ingest --suggest-map``)."""
    rows = [
        {
            "table": table,
            "field": u["field"],
            "value": _shown_value(u["value"]),
            "rows": int(u["count"]),
            "action": u["action"],
        }
        for table, t in sorted(report.get("tables", {}).items())
        for u in t.get("unmapped_values", [])
    ]
    return pd.DataFrame(rows, columns=["table", "field", "value", "rows", "action"])


def file_notes(report: dict) -> pd.DataFrame:
    """What was not read as records, per file: title and footer lines skipped, blank lines,
    open-end sentinels read as "still open"; plus absent tables, unmatched files, broken links."""
    rows = []
    for table, t in sorted(report.get("tables", {}).items()):
        for f in t.get("files", []):
            rows.append(
                {
                    "table": table,
                    "file": f["file"],
                    "sheets": len(f.get("sheets") or [f["file"]]),
                    "title_lines": len(f.get("title_rows_skipped", [])),
                    "footer_lines": len(f.get("footer_rows_skipped", [])),
                    "blank_lines": int(f.get("blank_rows_skipped", 0)),
                    "note": "",
                }
            )
        if t.get("open_end_sentinels"):
            rows.append(
                {
                    "table": table,
                    "file": "",
                    "sheets": 0,
                    "title_lines": 0,
                    "footer_lines": 0,
                    "blank_lines": 0,
                    "note": "open-end dates (9999/12/31 ...) read as still open: "
                    + ", ".join(f"{k} {v}" for k, v in sorted(t["open_end_sentinels"].items())),
                }
            )
    for table in report.get("missing_tables", []):
        rows.append(
            {
                "table": table,
                "file": "",
                "sheets": 0,
                "title_lines": 0,
                "footer_lines": 0,
                "blank_lines": 0,
                "note": "no export (optional source absent)",
            }
        )
    for kind, names in (
        ("fits no table's file pattern", report.get("unmatched_files", [])),
        ("broken link", report.get("broken_links", [])),
    ):
        for name in names:
            rows.append(
                {
                    "table": "",
                    "file": name,
                    "sheets": 0,
                    "title_lines": 0,
                    "footer_lines": 0,
                    "blank_lines": 0,
                    "note": f"not read: {kind}",
                }
            )
    return pd.DataFrame(
        rows,
        columns=["table", "file", "sheets", "title_lines", "footer_lines", "blank_lines", "note"],
    )


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
            zero = (
                int((pd.to_numeric(col, errors="coerce") == 0).sum())
                if f.type in ("int", "float")
                else 0
            )
            rows.append(
                {
                    "table": table,
                    "column": f.name,
                    "rule": f.missing,
                    "rows": len(df),
                    "blank_unknown": blank if f.missing == "unknown" else 0,
                    "blank_none": blank if f.missing == "none" else 0,
                    "zero": zero,
                    "blank_share": blank / len(df) if len(df) else np.nan,
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "table",
            "column",
            "rule",
            "rows",
            "blank_unknown",
            "blank_none",
            "zero",
            "blank_share",
        ],
    )


def fiscal_year(dates: pd.Series) -> pd.Series:
    """Japanese fiscal year (April to March) of each date; <NA> for NaT."""
    d = pd.to_datetime(dates)
    fy = d.dt.year - (d.dt.month < 4).astype(int)
    return fy.astype("Int64")


def date_coverage(
    mart: dict[str, pd.DataFrame],
    schemas: dict[str, TableSchema],
    fiscal_years: list[int] | None = None,
) -> pd.DataFrame:
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
                parts.append(
                    {"table": table, "column": f.name, "fiscal_year": int(year), "records": int(n)}
                )
    long = pd.DataFrame(parts, columns=["table", "column", "fiscal_year", "records"])
    if long.empty:
        return long
    wide = long.pivot_table(
        index=["table", "column"],
        columns="fiscal_year",
        values="records",
        aggfunc="sum",
        fill_value=0,
    )
    wide.columns = [f"FY{c}" for c in wide.columns]
    return wide.reset_index()


def in_mover_share(residents: pd.DataFrame, fiscal_years: list[int]) -> pd.DataFrame:
    """Per fiscal year: residents registered at some point in the year, and how many moved in
    (non-blank move-in date) — for them, earlier records are missing, not zero."""
    start = pd.to_datetime([f"{y}-04-01" for y in fiscal_years])
    end = pd.to_datetime([f"{y + 1}-03-31" for y in fiscal_years])
    born = residents["birth_date"].to_numpy(dtype="datetime64[ns]")
    left = (
        residents["move_out_date"].fillna(residents["death_date"]).to_numpy(dtype="datetime64[ns]")
    )
    moved_in = residents["move_in_date"].to_numpy(dtype="datetime64[ns]")
    rows = []
    for y, s, e in zip(fiscal_years, start, end, strict=True):
        arrived = np.where(np.isnat(moved_in), born, moved_in)
        present = (arrived <= e.to_datetime64()) & (np.isnat(left) | (left >= s.to_datetime64()))
        n = int(present.sum())
        movers = int((present & ~np.isnat(moved_in)).sum())
        rows.append(
            {
                "fiscal_year": y,
                "residents": n,
                "in_movers": movers,
                "in_mover_share": movers / n if n else np.nan,
            }
        )
    return pd.DataFrame(rows)


def linkage_rate(report: dict) -> pd.DataFrame:
    """Share of each table's records whose key is found in the table it refers to, counted
    before records with an unknown key were rejected (``orphan_key``): after that rejection
    every remaining record links by construction, so a mart-based rate would read 100%.

    School attendance links through the student number in the school register; tables keyed
    by household only are checked against the household history.
    """
    rows = []
    for table, t in sorted(report.get("tables", {}).items()):
        for key, link in sorted(t.get("linkage", {}).items()):
            rows.append(
                {
                    "table": table,
                    "key": key,
                    "references": link["references"],
                    "records": link["records"],
                    "key_blank": link["key_blank"],
                    "linked": link["linked"],
                    "not_found": link["not_found"],
                    "linkage_rate": link["linkage_rate"]
                    if link["linkage_rate"] is not None
                    else np.nan,
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "table",
            "key",
            "references",
            "records",
            "key_blank",
            "linked",
            "not_found",
            "linkage_rate",
        ],
    )


def masking_summary(report: dict) -> pd.DataFrame:
    """What top-coding did per field: bounds and how many values each bound changed."""
    rows = []
    for table, t in sorted(report.get("tables", {}).items()):
        for fname, info in sorted(t.get("topcode", {}).items()):
            rows.append(
                {
                    "table": table,
                    "column": fname,
                    "lower": info.get("lower"),
                    "upper": info.get("upper"),
                    "values": info.get("n_values", 0),
                    "clipped_low": info.get("n_lower", 0),
                    "clipped_high": info.get("n_upper", 0),
                }
            )
    return pd.DataFrame(
        rows, columns=["table", "column", "lower", "upper", "values", "clipped_low", "clipped_high"]
    )
