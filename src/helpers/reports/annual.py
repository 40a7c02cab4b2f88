"""Annual consultation statistics (notebook 06): pure aggregations of mart tables.

Tables come out "wide" (one row per category, one column per fiscal year, a total row at the
bottom) because that is how municipal yearly statistics are read. They carry raw counts; the
report passes them through disclosure control (`helpers.reports.api.show_table(counts=...,
universe="consultations")`): the tables by type, route and age band split the same
consultations, so their total rows are one set of margins the suppression protects against.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from helpers import MimamoriError
from helpers.config import Settings
from helpers.panel.coverage import empty_table
from helpers.paths import paths
from helpers.reports.api import Table
from helpers.reports.disclosure import Rules, count_text
from helpers.reports.plotting import assessment_timeline, bar_by_year, label
from helpers.schema import load_schema, load_schemas

TOTAL_LABEL = "合計（total）"
UNKNOWN_LABEL = "不明（unknown）"
NONE_LABEL = "なし（none）"
AGE_BANDS: tuple[tuple[int, int, str], ...] = (
    (0, 2, "0〜2歳"),
    (3, 5, "3〜5歳（就学前 preschool）"),
    (6, 11, "6〜11歳（小学生年代 primary）"),
    (12, 14, "12〜14歳（中学生年代 lower secondary）"),
    (15, 17, "15〜17歳"),
    (18, 200, "18歳以上（18+）"),
)
ASSESSMENT_LABELS = {"good": "良い（good）", "fair": "普通（fair）", "poor": "悪い（poor）"}


def mart_path(cfg: Settings, table: str) -> Path:
    return paths(cfg).mart_table(table)


def read_mart(cfg: Settings, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    """One mart table; a clear error (which stage to run) when it is missing."""
    path = mart_path(cfg, table)
    if not path.exists():
        raise MimamoriError(
            f"{path}: mart table not found; run `make mart` (python -m helpers ingest) first"
        )
    df = pd.read_parquet(path, columns=columns)
    return df


def fiscal_year(dates: pd.Series) -> pd.Series:
    """Japanese fiscal year (年度, April–March) of each date; missing stays missing."""
    d = pd.to_datetime(dates)
    fy = d.dt.year - (d.dt.month < 4).astype("Int64")
    return fy.astype("Int64")


def age_in_years(birth: pd.Series, at: pd.Series) -> pd.Series:
    """Completed years at ``at`` from month-level (masked) birth dates; missing stays missing."""
    b = pd.to_datetime(birth)
    a = pd.to_datetime(at)
    years = (a.dt.year - b.dt.year) - (a.dt.month < b.dt.month).astype("Int64")
    return years.astype("Int64")


def age_band(age: pd.Series) -> pd.Series:
    """Age-band label of each age (AGE_BANDS); missing age → 不明 (unknown)."""
    out = pd.Series(UNKNOWN_LABEL, index=age.index, dtype=object)
    a = age.astype("Float64")
    for lo, hi, lab in AGE_BANDS:
        out[((a >= lo) & (a <= hi)).fillna(False).to_numpy(dtype=bool)] = lab
    return out


def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MimamoriError(f"{what}: columns {missing} missing (have {list(df.columns)})")


def consultation_frame(consultations: pd.DataFrame, residents: pd.DataFrame) -> pd.DataFrame:
    """Consultations with fiscal year, the child's age at receipt and age band."""
    _require(consultations, ["resident_code", "received_date"], "consultations")
    _require(residents, ["resident_code", "birth_date"], "residents")
    births = residents[["resident_code", "birth_date"]].drop_duplicates("resident_code")
    out = consultations.merge(births, on="resident_code", how="left", validate="many_to_one")
    out["fiscal_year"] = fiscal_year(out["received_date"])
    out["age"] = age_in_years(out["birth_date"], out["received_date"])
    out["age_band"] = age_band(out["age"])
    return out


def year_label(year: int) -> str:
    return f"{int(year)}年度"


def count_by_year(
    frame: pd.DataFrame,
    category: str,
    labels: Mapping[str, str] | None = None,
    years: Iterable[int] | None = None,
    category_title: str = "区分（category）",
    total: bool = True,
) -> pd.DataFrame:
    """Rows per category (all ``labels`` even when zero), one count column per fiscal year.

    Missing categories are counted as 不明 (unknown), never dropped; a total row is added.
    """
    _require(frame, [category, "fiscal_year"], "count_by_year")
    data = frame[[category, "fiscal_year"]].dropna(subset=["fiscal_year"])
    cat = data[category].astype(object)
    if labels:
        cat = cat.map(lambda v: labels.get(v, str(v)) if pd.notna(v) else UNKNOWN_LABEL)
    else:
        cat = cat.where(cat.notna(), UNKNOWN_LABEL).astype(str)
    years = sorted(set(years) if years is not None else set(data["fiscal_year"].astype(int)))
    table = pd.crosstab(cat, data["fiscal_year"].astype(int))
    order = list(dict.fromkeys([*(labels.values() if labels else []), *sorted(table.index)]))
    if UNKNOWN_LABEL in order:
        order = [o for o in order if o != UNKNOWN_LABEL] + [UNKNOWN_LABEL]
    table = table.reindex(index=order, columns=years, fill_value=0).astype("int64")
    if UNKNOWN_LABEL in table.index and table.loc[UNKNOWN_LABEL].sum() == 0:
        table = table.drop(index=UNKNOWN_LABEL)
    table.columns = [year_label(y) for y in table.columns]
    if total:
        table.loc[TOTAL_LABEL] = table.sum(axis=0)
    table.index.name = category_title
    return table.reset_index()


def explode_agencies(
    frame: pd.DataFrame, column: str = "agencies", sep: str = "・"
) -> pd.DataFrame:
    """One row per (consultation, agency); blank agencies → なし (none: the rule for this field)."""
    _require(frame, [column, "fiscal_year"], "explode_agencies")
    parts = frame[column].astype("string").fillna("").str.split(sep)
    out = pd.DataFrame(
        {
            "row": np.arange(len(frame)),
            "fiscal_year": frame["fiscal_year"].to_numpy(),
            "agency": parts.to_numpy(),
        }
    ).explode("agency")
    out["agency"] = out["agency"].astype("string").str.strip().replace("", pd.NA)
    has_any = out["agency"].notna().groupby(out["row"]).transform("any")
    out = out[out["agency"].notna() | ~has_any].drop_duplicates(["row", "agency"])
    out["agency"] = out["agency"].fillna(NONE_LABEL)
    return out[["fiscal_year", "agency"]].reset_index(drop=True)


def yearly_summary(frame: pd.DataFrame, years: Iterable[int] | None = None) -> pd.DataFrame:
    """Per fiscal year: consultations, distinct children, young carers determined."""
    _require(frame, ["fiscal_year", "resident_code"], "yearly_summary")
    data = frame.dropna(subset=["fiscal_year"]).copy()
    data["fiscal_year"] = data["fiscal_year"].astype(int)
    g = data.groupby("fiscal_year")
    out = pd.DataFrame(
        {
            "相談件数（consultations）": g.size(),
            "児童数（children）": g["resident_code"].nunique(),
        }
    )
    if "young_carer_determined" in data.columns:
        yc = data["young_carer_determined"].astype("boolean").fillna(False).astype(bool)
        out["ヤングケアラー判定（young carers determined）"] = yc.groupby(data["fiscal_year"]).sum()
    if years is not None:
        out = out.reindex(sorted(years), fill_value=0)
    out = out.fillna(0).astype("int64")
    out.index.name = "年度（fiscal year）"
    return out.reset_index()


def busiest_child(progress: pd.DataFrame) -> str:
    """Pseudonym of the child with the most progress records (ties: smallest pseudonym)."""
    _require(progress, ["resident_code"], "progress_records")
    counts = progress["resident_code"].dropna().astype(str).value_counts()
    if counts.empty:
        raise MimamoriError("progress_records: no records with a child pseudonym")
    top = counts[counts == counts.max()]
    return str(sorted(top.index)[0])


def child_timeline(progress: pd.DataFrame, child: str) -> pd.DataFrame:
    """One child's assessments by month (month-level dates and the pseudonym only)."""
    _require(progress, ["resident_code", "record_date", "assessment"], "progress_records")
    rows = progress[progress["resident_code"].astype(str) == str(child)]
    if rows.empty:
        raise MimamoriError(f"progress_records: no records for child {child!r}")
    rows = rows.sort_values("record_date", kind="stable")
    return pd.DataFrame(
        {
            "record_date": pd.to_datetime(rows["record_date"]).dt.to_period("M").dt.to_timestamp(),
            "assessment": rows["assessment"].astype(str),
        }
    ).reset_index(drop=True)


def timeline_table(timeline: pd.DataFrame) -> pd.DataFrame:
    """Display form of `child_timeline`: 記録月 (YYYY-MM) and the Japanese assessment label."""
    return pd.DataFrame(
        {
            "記録月（month）": timeline["record_date"].dt.strftime("%Y-%m"),
            "評価（assessment）": timeline["assessment"]
            .map(ASSESSMENT_LABELS)
            .fillna(timeline["assessment"]),
        }
    )


def assessment_mix(progress: pd.DataFrame, years: Iterable[int] | None = None) -> pd.DataFrame:
    """Count of 良い/普通/悪い progress records per fiscal year (a count table)."""
    _require(progress, ["record_date", "assessment"], "progress_records")
    frame = progress.assign(fiscal_year=fiscal_year(progress["record_date"]))
    return count_by_year(
        frame,
        "assessment",
        labels=ASSESSMENT_LABELS,
        years=years,
        category_title="評価（assessment）",
    )


def enum_labels(table: str, field: str) -> dict[str, str]:
    """Schema labels ("Japanese (code)") of an enum field, for table rows."""
    labels = load_schema(table).field(field).enum_labels()
    return {code: f"{label}（{code}）" for code, label in labels.items()}


def headline_text(summary: pd.DataFrame, rules: Rules) -> str:
    """Headline: consultations in the latest fiscal year (banded if small)."""
    if summary.empty:
        return "相談記録なし（no consultations）"
    last = summary.iloc[-1]
    shown = count_text(last["相談件数（consultations）"], rules)
    return (
        f"{int(last['年度（fiscal year）'])}年度の相談件数 {shown} 件"
        f"（consultations in FY{int(last['年度（fiscal year）'])}: {shown}）"
    )


# --------------------------------------------------------------------------- the report
MART_TABLES = ("consultations", "residents", "progress_records")
OPTIONAL_TABLES = ("consultations", "progress_records")  # absent export: empty, reported


def read_optional(cfg: Settings, table: str) -> pd.DataFrame:
    """A mart table, or an empty one with its columns when the source had no export."""
    if not mart_path(cfg, table).exists():
        return empty_table(load_schemas()[table])
    return read_mart(cfg, table)


@dataclass
class AnnualReport:
    """What report 06 shows, built once from the mart: every section is a `Table` or a figure.

    The tables by type, route and age band split the same consultations (``universe``), so
    their total rows are one set of margins the disclosure control protects against.
    """

    cfg: Settings
    years: list[int]
    cases: pd.DataFrame
    progress: pd.DataFrame
    child: str
    absent: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, cfg: Settings, child: str = "") -> AnnualReport:
        years = list(cfg.run.fiscal_years)
        residents = read_mart(cfg, "residents", columns=["resident_code", "birth_date"])
        cases = consultation_frame(read_optional(cfg, "consultations"), residents)
        progress = read_optional(cfg, "progress_records")
        absent = [t for t in OPTIONAL_TABLES if not mart_path(cfg, t).exists()]
        return cls(
            cfg,
            years,
            cases[cases["fiscal_year"].isin(years)],
            progress,
            child or (busiest_child(progress) if len(progress) else ""),
            absent,
        )

    def absent_note(self) -> str:
        """Which source had no export (its sections stay empty), or ''."""
        if not self.absent:
            return ""
        return (
            "エクスポートなし（no export）: "
            + ", ".join(self.absent)
            + " — 該当する表は空です（those tables are empty）"
        )

    @property
    def rules(self) -> Rules:
        return Rules.from_cfg(self.cfg)

    @property
    def inputs(self) -> list[Path]:
        return [mart_path(self.cfg, t) for t in MART_TABLES if t not in self.absent]

    def summary(self) -> Table:
        s = yearly_summary(self.cases, years=self.years)
        return Table(
            s,
            "年度別の相談件数（consultations per fiscal year）",
            [c for c in s.columns if c != "年度（fiscal year）"],
        )

    def headline(self) -> str:
        return headline_text(self.summary().frame, self.rules)

    def summary_figure(self) -> Axes:
        return bar_by_year(
            self.summary().frame,
            "年度（fiscal year）",
            "相談件数（consultations）",
            self.rules,
            title=label("相談件数", "consultations"),
        )

    def _by(
        self,
        column: str,
        labels: Mapping[str, str] | None,
        title: str,
        caption: str,
        frame: pd.DataFrame | None = None,
        universe: str | None = "consultations",
    ) -> Table:
        t = count_by_year(
            self.cases if frame is None else frame,
            column,
            labels,
            self.years,
            category_title=title,
            total=universe is not None,
        )
        return Table(t, caption, [c for c in t.columns if c.endswith("年度")], universe=universe)

    def by_type(self) -> Table:
        return self._by(
            "consultation_type",
            enum_labels("consultations", "consultation_type"),
            "相談種別（type）",
            "相談種別 × 年度（consultations by type）",
        )

    def by_route(self) -> Table:
        return self._by(
            "referral_route",
            enum_labels("consultations", "referral_route"),
            "相談経路（referral route）",
            "相談経路 × 年度（consultations by referral route）",
        )

    def by_age(self) -> Table:
        return self._by(
            "age_band",
            {b[2]: b[2] for b in AGE_BANDS},
            "受付時の年齢（age at receipt）",
            "年齢区分 × 年度（consultations by age band）",
        )

    def by_agency(self) -> Table:
        """Several agencies per consultation: no total row, not part of the universe."""
        return self._by(
            "agency",
            None,
            "関係機関（agency）",
            "関係機関 × 年度（consultations by agency involved, multiple counting）",
            frame=explode_agencies(self.cases),
            universe=None,
        )

    def assessments(self) -> Table:
        mix = assessment_mix(self.progress, self.years)
        return Table(
            mix,
            "経過評価 × 年度（progress assessments per fiscal year）",
            [c for c in mix.columns if c.endswith("年度")],
            universe="progress records",
        )

    def timeline(self) -> Table:
        return Table(
            timeline_table(child_timeline(self.progress, self.child)),
            f"仮名 {self.child} の経過評価（assessments of pseudonymous child {self.child}）",
            max_rows=60,
        )

    def timeline_figure(self) -> Axes:
        return assessment_timeline(child_timeline(self.progress, self.child))
