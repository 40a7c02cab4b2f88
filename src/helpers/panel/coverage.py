"""What each source export covers, so a window it did not observe is NaN, never a silent 0.

A real municipality's exports do not all start when the panel starts and do not all end on one
day: the consultation system may begin in 2019, a checkup export may hold only recent years,
an optional source (介護保険) may be missing altogether, and the last fiscal year's outcomes are
incomplete when the export is taken mid-year. For every source this module records

- whether its export is **absent** (every feature it feeds is NaN; the absence is reported),
- the first day it **covers** (``panel.source_start`` if configured, else its earliest record),
- the last day it covers: ``run.export_date`` if configured, else the end of the month of the
  latest date seen in the exports (a masked date stands for its month). For feature windows
  that is the latest date of the whole extraction (a sparse source such as 生活保護 may simply
  have had no new record in its last months); for outcome labels it is the latest date seen
  in the consultation system's own exports, so a mid-year export leaves the last year open.

A feature window reaching before a source's first day, or an as-of date after its last day,
is unobserved; the label of fiscal year t is observed only when the outcome window ends by the
consultation system's last covered day. The spans are computed once from the
full mart, so the leakage check's cut mart sees the same spans (they describe the exports, not
any child's record).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers import MimamoriError
from helpers.config import Settings
from helpers.schema import TableSchema, load_schemas

NEVER = pd.Timestamp.min
SPINE_TABLES = ("residents", "household_history")  # define who is here: never limited
# aggregates recomputed from other columns: an absent source makes them count fewer known items
DERIVED = ("yc_rule_score", "yc_items_unknown")


@dataclass(frozen=True)
class Coverage:
    """First and last covered day per present source, and the absent sources."""

    start: dict[str, pd.Timestamp] = field(default_factory=dict)
    end: dict[str, pd.Timestamp] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()
    configured: frozenset[str] = frozenset()
    own_end: dict[str, pd.Timestamp] = field(default_factory=dict)  # per source system

    def covered_from(self, table: str, on: pd.Timestamp) -> pd.Timestamp:
        """First day a window ending at ``on`` may reach back to for this source.

        ``on`` itself (nothing before it is observed) when the source is absent, starts on or
        after ``on`` or ends before ``on``; ``NEVER`` (unlimited) for a source without dates.
        """
        if table in self.absent:
            return on
        end = self.end.get(table)
        if end is not None and end < on - pd.Timedelta(days=1):
            return on
        start = self.start.get(table)
        if start is None:
            return NEVER
        return min(start, on)

    def first_fiscal_year(self, table: str, fiscal_year: int) -> int:
        """Earliest fiscal year a yearly source covers, as seen from fiscal year t (t when it
        covers nothing before t)."""
        on = pd.Timestamp(year=fiscal_year, month=4, day=1)
        start = self.covered_from(table, on)
        if start == NEVER:
            return -(10**6)
        return int(start.year - (start.month < 4))

    def summary(self) -> list[dict]:
        """One row per source for the panel's coverage.json and the reports."""
        names = sorted(set(self.start) | set(self.end) | set(self.absent))
        return [
            {
                "table": t,
                "absent": t in self.absent,
                "first_covered": _iso(self.start.get(t)),
                "last_covered": _iso(self.end.get(t)),
                "last_in_own_exports": _iso(self.own_end.get(t)),
                "first_from": "configured" if t in self.configured else "export",
            }
            for t in names
        ]


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None or pd.isna(ts) else ts.date().isoformat()


def _month_end(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.normalize() + pd.offsets.MonthEnd(0)


def span_dates(df: pd.DataFrame, schema: TableSchema) -> tuple[pd.Series, pd.Series]:
    """The dates that say when a source holds records: its first required date field (the
    event or period start), or its fiscal year (1 April .. 31 March); and every date it holds
    (period ends too) for its last covered day. Only their first and last matter (a yearly
    source gives each of its fiscal years once)."""
    if "fiscal_year" in schema.field_names and "fiscal_year" in df:
        fy = pd.to_numeric(df["fiscal_year"], errors="coerce").dropna().astype(int)
        fy = pd.Series(np.unique(fy.to_numpy()), dtype="int64")  # only the span is used
        starts = pd.to_datetime(fy.astype(str) + "-04-01")
        return starts, pd.to_datetime((fy + 1).astype(str) + "-03-31")
    dated = [
        f
        for f in schema.mart_fields
        if f.type == "date" and f.masking != "birth_month" and f.name in df
    ]
    first = next((f.name for f in dated if f.required), None)
    starts = df[first].dropna() if first else pd.Series(dtype="datetime64[ns]")
    every = pd.concat([df[f.name] for f in dated]).dropna() if dated else starts
    return starts, every


def source_coverage(
    mart: Mapping[str, pd.DataFrame],
    absent: Iterable[str],
    cfg: Settings,
    schemas: Mapping[str, TableSchema] | None = None,
) -> Coverage:
    """Spans of every source from the (full) mart and the settings."""
    schemas = schemas or load_schemas()
    absent = frozenset(absent)
    configured = {
        t: _parse_day(v, f"config/panel.yaml: source_start: {t}")
        for t, v in cfg.panel.source_start.items()
    }
    unknown = sorted(set(configured) - set(schemas))
    if unknown:
        raise MimamoriError(
            f"config/panel.yaml: source_start: {unknown} are not tables of "
            f"data_schema/ ({sorted(schemas)})"
        )
    export_date = (
        _parse_day(cfg.run.export_date, "config/run.yaml: export_date")
        if cfg.run.export_date
        else None
    )
    start: dict[str, pd.Timestamp] = {}
    latest: dict[str, pd.Timestamp] = {}
    for table, df in mart.items():
        if table in absent or table in SPINE_TABLES:
            continue
        starts, every = span_dates(df, schemas[table])
        if len(starts):
            start[table] = configured.get(table, starts.min())
        elif table in configured:
            start[table] = configured[table]
        if len(every):
            system = schemas[table].system
            seen = _month_end(every.max())
            latest[system] = max(latest.get(system, seen), seen)
    present = [t for t in mart if t not in absent]
    extraction = max(latest.values()) if latest else None
    end = {t: export_date or extraction for t in present if (export_date or extraction)}
    own = {
        t: export_date or latest[schemas[t].system] for t in present if schemas[t].system in latest
    }
    return Coverage(start, end, absent, frozenset(configured) - absent, own)  # type: ignore[arg-type]


def _parse_day(value: str, where: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(str(value)).normalize()
    except ValueError:
        raise MimamoriError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None


def label_observed(
    on: pd.Timestamp, years: int, coverage: Coverage, table: str = "consultations"
) -> bool:
    """Whether the outcome window [on, on + years) lies inside what the export covers."""
    if table in coverage.absent or table not in coverage.own_end:
        return False
    return on + pd.DateOffset(years=years) - pd.Timedelta(days=1) <= coverage.own_end[table]


# ---------------------------------------------------------------------------------- absence
def empty_table(schema: TableSchema) -> pd.DataFrame:
    """A source without an export: no rows, the mart's columns and dtypes."""
    return pd.DataFrame({n: pd.Series(dtype=d) for n, d in schema.mart_dtypes().items()})


def blank_absent(
    frame: pd.DataFrame, sources: Mapping[str, tuple[str, ...]], absent: frozenset[str]
) -> pd.DataFrame:
    """NaN in every column fed by an absent source (``sources``: column -> its tables), so an
    unobserved source is unknown, never 0."""
    if not absent:
        return frame
    hit = [
        c
        for c in frame.columns
        if c in sources
        and c not in DERIVED
        and absent.intersection(sources[c])
        and not c.startswith("miss_")
    ]
    if hit and all(frame[c].dtype == "float64" for c in hit):
        # a new frame that shares the other columns (no copy of a wide frame per call)
        blank = set(hit)
        return pd.DataFrame(
            {c: np.full(len(frame), np.nan) if c in blank else frame[c] for c in frame.columns},
            index=frame.index,
            copy=False,
        )
    if hit:
        frame = frame.copy()
        frame[hit] = np.nan
    return frame


# ---------------------------------------------------------------------------------- households
def _zero_unless(values: pd.Series, observed: pd.Series) -> pd.Series:
    values = values.astype("float64")
    return values.where((values > 0) | observed.reindex(values.index).fillna(False).astype(bool))


def household_windows(
    household: pd.DataFrame,
    spine: pd.DataFrame,
    on: pd.Timestamp,
    fiscal_year: int,
    coverage: Coverage,
) -> pd.DataFrame:
    """Household items over a look-back window are NaN (unless positive) for a child who was
    not here for the whole window (an in-mover: the household's history before the move-in is
    held elsewhere) or when the source does not cover it."""
    from helpers.panel.features import observed_since  # the one rule for "window observed"

    out = household.copy()
    last_fy = on - pd.DateOffset(years=1)
    rules = {
        "hh_public_assistance_3fy": ("public_assistance", on - pd.DateOffset(years=3)),
        "hh_school_aid": ("school_aid", last_fy),
        "yc_school_aid": ("school_aid", last_fy),
        "hh_siblings_special_needs": ("school_register", last_fy),
        "yc_sibling_special_needs": ("school_register", last_fy),
        "yc_indep_support_ever": ("independence_support", None),
    }
    for column, (table, start) in rules.items():
        if column in out:
            seen = observed_since(spine, start, coverage.covered_from(table, on))
            out[column] = _zero_unless(out[column], seen)
    return out
