"""What report 01 (data quality) shows, as tables with their disclosure declarations.

Every table is built from the ingest report and the masked mart (``helpers.ingest.quality``);
the notebook only shows them (``helpers.reports.api.show``), which applies small-cell and
secondary suppression.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from helpers.config import Settings
from helpers.ingest import quality
from helpers.paths import Paths, paths
from helpers.reports.api import Table
from helpers.schema import TableSchema, load_schemas


@dataclass
class QualityReport:
    """The ingest report and the mart, loaded once for report 01."""

    cfg: Settings
    P: Paths
    report: dict
    mart: dict[str, pd.DataFrame]
    schemas: dict[str, TableSchema]

    @classmethod
    def load(cls, cfg: Settings) -> QualityReport:
        P = paths(cfg)
        schemas = load_schemas()
        return cls(
            cfg, P, quality.load_report(P.mart), quality.load_mart(P.mart, list(schemas)), schemas
        )

    @property
    def inputs(self) -> list[Path]:
        return [self.P.ingest_report]

    def headline(self) -> str:
        totals, n = self.report["totals"], len(self.report.get("tables", {}))
        share = totals["rows_rejected"] / totals["rows_in"] if totals["rows_in"] else 0.0
        return (
            f"{n}表・{totals['rows_in']:,}行を取り込み、{share:.2%}を理由付きで除外"
            f"（{n} tables, {totals['rows_in']:,} rows read; {share:.2%} rejected with a "
            "reason）"
        )

    def rows(self) -> Table:
        s = quality.table_summary(self.report)
        return Table(
            s.assign(removed=s["rows_in"] - s["rows_out"]),
            "表ごとの取込件数（rows per table; removed = rejected + duplicates）",
            [
                "rows_in",
                "rows_out",
                "rows_rejected",
                "duplicates_dropped",
                "removed",
                "cells_blanked",
            ],
            {"reject_rate": "rows_rejected"},
            publishes={"removed": "removed"},
            max_rows=40,
        )

    def reasons(self) -> Table:
        return Table(
            quality.reason_counts(self.report),
            "除外理由（reject reasons per table）",
            ["rows"],
            group_by=["table"],
            margins={"rows": "removed"},
            max_rows=80,
        )

    def cells_blanked(self) -> Table:
        return Table(
            quality.cell_warning_counts(self.report),
            "空欄にした不正な値（bad cells blanked, per table, column and reason）",
            ["cells"],
            max_rows=80,
        )

    def unmapped(self) -> Table:
        return Table(
            quality.unmapped_values(self.report),
            "対応表にない値（unmapped values: table, field, value, rows）",
            ["rows"],
            max_rows=80,
        )

    def file_notes(self) -> Table:
        return Table(
            quality.file_notes(self.report),
            "ファイルごとの注記（notes per file）",
            ["title_lines", "footer_lines", "blank_lines"],
            max_rows=80,
        )

    def blanks(self) -> Table:
        miss = quality.missingness(self.mart, self.schemas)
        shown = miss[(miss["blank_unknown"] + miss["blank_none"] + miss["zero"]) > 0]
        return Table(
            shown,
            "列ごとの空欄とゼロ（blank and zero cells per column）",
            ["rows", "blank_unknown", "blank_none", "zero"],
            derived={"blank_share": ["blank_unknown", "blank_none"]},
            max_rows=200,
        )

    def records_per_year(self) -> Table:
        cov = quality.date_coverage(self.mart, self.schemas, list(self.cfg.run.fiscal_years))
        return Table(
            cov,
            "日付列の年度別件数（records per fiscal year of each date column）",
            [c for c in cov.columns if c.startswith("FY")],
            max_rows=80,
        )

    def in_movers(self) -> Table:
        shares = quality.in_mover_share(self.mart["residents"], list(self.cfg.run.fiscal_years))
        return Table(
            shares,
            "年度別の転入者割合（in-mover share per fiscal year）",
            ["residents", "in_movers"],
            {"in_mover_share": "in_movers"},
        )

    def linkage(self) -> Table:
        return Table(
            quality.linkage_rate(self.report),
            "住民記録との連携率（linkage rate, before orphans are rejected）",
            ["records", "key_blank", "linked", "not_found"],
            {"linkage_rate": "linked"},
            max_rows=40,
        )

    def key_text(self) -> str:
        source = self.report["key_source"]
        demo = (
            "（デモ用キー：合成データのみ / demo key: synthetic data only）"
            if source == "demo"
            else ""
        )
        return f"仮名化キー（pseudonym key）: {source}{demo}"

    def topcoding(self) -> Table:
        return Table(
            quality.masking_summary(self.report),
            "トップコーディング（top-coding bounds and values clipped）",
            ["values", "clipped_low", "clipped_high"],
            max_rows=40,
        )
