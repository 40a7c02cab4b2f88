"""The linkage-quality section of report 01 (名寄せ): tables, the match-weight histogram and the
sentences, built from ``data/mart/_linkage_report.json`` only (never the key master).

Per code-less source: export rows, linked automatically, by a clerical decision, unmatched and
the clerical workload; precision and recall of the automatic links against the generator's
truth (synthetic city) or estimated from splink's match probabilities (real data, labelled as
estimates); the histogram of each record's best match weight with the two thresholds.
"""

from __future__ import annotations

import json
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from helpers.paths import Paths
from helpers.reports.api import Table
from helpers.reports.disclosure import Rules, visible_counts
from helpers.reports.plotting import axes, hidden_bars, hidden_legend_handle, label


def load(P: Paths) -> dict | None:
    """The linkage report, or None when no export needed 名寄せ."""
    if not P.linkage_report.exists():
        return None
    return json.loads(P.linkage_report.read_text(encoding="utf-8"))


def summary_table(report: dict) -> Table:
    """Per source: export rows = auto + clerical + unmatched, and records awaiting review."""
    rows = [
        {
            "source": table,
            "rows": r["rows"],
            "auto": r["auto"],
            "clerical": r["clerical"],
            "unmatched": r["unmatched"],
            "clerical_workload": r["clerical_records_pending"],
        }
        for table, r in sorted(report.get("tables", {}).items())
    ]
    return Table(
        pd.DataFrame(rows),
        "名寄せの結果（records per code-less source: linked automatically, by a clerical "
        "decision, unmatched; clerical workload = records awaiting a 同一/別人 decision）",
        counts=["rows", "auto", "clerical", "unmatched", "clerical_workload"],
        sums={"rows": ["auto", "clerical", "unmatched"]},
    )


def quality_table(report: dict, synthetic: bool) -> Table:
    """Precision and recall of the automatic links: against the truth (synthetic city) or
    estimated from match probabilities (real data). A figure whose error count is 1..T is
    hidden with that count."""
    rows = []
    for table, r in sorted(report.get("tables", {}).items()):
        truth = r.get("truth") if synthetic else None
        if truth:
            right = round((truth["auto_precision"] or 0) * r["auto"])
            found = round((truth["auto_recall"] or 0) * truth["rows_person_in_registry"])
            rows.append(
                {
                    "source": table,
                    "basis": "正解データ（synthetic truth）",
                    "precision": truth["auto_precision"],
                    "recall": truth["auto_recall"],
                    "auto": r["auto"],
                    "wrong_links": r["auto"] - right,
                    "in_registry": truth["rows_person_in_registry"],
                    "missed": truth["rows_person_in_registry"] - found,
                    "twins_cross_linked": truth["twins_cross_linked"],
                }
            )
        else:
            est = r.get("estimates") or {}
            rows.append(
                {
                    "source": table,
                    "basis": "推定値：一致確率から（estimate from match probabilities）",
                    "precision": est.get("est_precision"),
                    "recall": est.get("est_recall"),
                }
            )
    frame = pd.DataFrame(rows)
    caption = "名寄せの精度（precision and recall of the automatic links）"
    if synthetic and "wrong_links" in frame:
        return Table(
            frame,
            caption,
            counts=["auto", "wrong_links", "in_registry", "missed", "twins_cross_linked"],
            derived={"precision": ["wrong_links"], "recall": ["missed"]},
        )
    return Table(frame, caption + "：推定値（estimates）", fixed=["precision", "recall"])


def weight_histogram(
    table_report: dict, rules: Rules, ax: Axes | None = None, title: str = ""
) -> Axes:
    """Bars of records by their best candidate's match weight (log2 Bayes factor) with the
    clerical and acceptance thresholds; a bar of 1..T records is hatched, without its value."""
    ax = axes(ax, figsize=(7, 3.2))
    hist = table_report["best_weight_histogram"]
    edges = np.asarray(hist["edges"], dtype=float)
    heights, small = visible_counts(hist["counts"], rules)
    width = float(np.diff(edges).min())
    mids = (edges[:-1] + edges[1:]) / 2
    ax.bar(mids[~small], heights[~small], width * 0.9)
    handles: list[Any] = []
    if small.any():
        hidden_bars(ax, mids[small], heights[small], width * 0.9)
        handles.append(hidden_legend_handle(rules))
    th = table_report["thresholds"]
    for key, text, style in (
        ("clerical_weight", label("目視確認の下限", "clerical threshold"), "--"),
        ("accept_weight", label("自動採用の下限", "acceptance threshold"), "-"),
    ):
        handles.append(ax.axvline(th[key], color="black", linestyle=style, label=text))
    ax.set_xlabel(label("最良候補の一致重み", "best match weight (log2 Bayes factor)"))
    ax.set_ylabel(label("レコード数", "records"))
    ax.set_ylim(bottom=0)
    ax.legend(handles=handles, fontsize="small")
    if title:
        ax.set_title(title)
    return ax


def histogram_figure(report: dict, rules: Rules) -> Figure:
    """One histogram (`weight_histogram`) per code-less source, stacked in one figure."""
    tables = sorted(report.get("tables", {}))
    fig, grid = plt.subplots(max(len(tables), 1), 1, figsize=(7, 3.2 * max(len(tables), 1)))
    for ax, table in zip(np.atleast_1d(grid), tables, strict=False):
        weight_histogram(report["tables"][table], rules, ax=ax, title=table)
    fig.tight_layout()
    return fig


def unmatched_text(report: dict) -> str:
    """What an unmatched record means for the panel (Japanese first)."""
    sources = "・".join(sorted(report.get("tables", {})))
    return (
        f"未突合のレコード（{sources}）は住民記録のどの子どもにも結び付かないため、その子どもの"
        "パネル上の該当特徴量は「0（記録なし）」ではなく「不明（NaN）」になります。最良候補が"
        "ある未突合レコードは、その候補の子どもの特徴量も不明にします。目視確認で判定すると、"
        "次回の取込で反映され、同じ組は二度と尋ねません。"
        " (An unmatched record links to no child: that child's features from this source are "
        "unknown (NaN), not zero; an unmatched record with a best candidate makes the "
        "candidate's features unknown too. Clerical decisions take effect at the next ingest "
        "and a decided pair is never asked again.)"
    )
