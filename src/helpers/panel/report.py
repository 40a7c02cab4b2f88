"""What report 02 (the panel) shows: size per year, binary-feature prevalence, the
young-carer item analysis (lesson 1: correlated rule items count one trait several times),
and their plots. Moved here from ``helpers.panel.features``, which builds the panel.

Tables carry raw counts; the report passes them through disclosure control
(``helpers.reports.api.show`` / ``show_table``), and the plots hide what the tables hide.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from helpers.panel.features import YC_ITEM_NAMES
from helpers.reports.api import Table
from helpers.reports.disclosure import Rules, small_mask
from helpers.reports.plotting import axes, label


def item_redundancy(
    panel: pd.DataFrame,
    items: list[str] | None = None,
    n_factors: int = 3,
    corr_threshold: float = 0.5,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Which young-carer items measure the same trait twice (docs/domain.md, lesson 1).

    Returns the item correlation matrix (pairwise, phi for binaries), factor loadings
    (sklearn FactorAnalysis with varimax on standardised items), and a table of redundant
    pairs: |r| >= corr_threshold or both items loading mainly on the same factor with
    |loading| >= 0.5. The suggested item to drop in each pair is the rarer one.
    """
    from sklearn.decomposition import FactorAnalysis
    from threadpoolctl import threadpool_limits

    items = items or YC_ITEM_NAMES
    data = panel[items].astype("float64")
    corr = data.corr(min_periods=30)
    complete = data.dropna()
    usable = [c for c in items if complete[c].std() > 0] if len(complete) else []
    loadings = pd.DataFrame(index=items, dtype="float64")
    if len(usable) >= 2 and len(complete) >= 30:
        z = (complete[usable] - complete[usable].mean()) / complete[usable].std()
        k = max(1, min(n_factors, len(usable) - 1))
        # small matrix: one BLAS thread is fastest and avoids oversubscribing shared cores
        with threadpool_limits(1):
            fa = FactorAnalysis(
                n_components=k, rotation="varimax", svd_method="lapack", random_state=seed
            ).fit(z)
        loadings = pd.DataFrame(
            fa.components_.T, index=usable, columns=[f"factor_{i + 1}" for i in range(k)]
        ).reindex(items)
    rows = []
    prevalence = data.mean()
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            r = corr.loc[a, b]
            same_factor = False
            if loadings.shape[1] and loadings.loc[[a, b]].notna().all(axis=None):
                la, lb = loadings.loc[a], loadings.loc[b]
                same_factor = (
                    la.abs().idxmax() == lb.abs().idxmax()
                    and la.abs().max() >= 0.5
                    and lb.abs().max() >= 0.5
                )
            if (pd.notna(r) and abs(r) >= corr_threshold) or same_factor:
                drop = a if prevalence[a] <= prevalence[b] else b
                rows.append(
                    {
                        "item_a": a,
                        "item_b": b,
                        "correlation": r,
                        "same_factor": same_factor,
                        "suggest_drop": drop,
                    }
                )
    redundant = pd.DataFrame(
        rows, columns=["item_a", "item_b", "correlation", "same_factor", "suggest_drop"]
    )
    return {"correlation": corr, "loadings": loadings, "redundant_pairs": redundant}


def panel_size_table(panel: pd.DataFrame, targets: list[str]) -> pd.DataFrame:
    """Rows, labelled rows, positives and already-known children per fiscal year (counts)."""
    g = panel.groupby("fiscal_year")
    out = pd.DataFrame({"child_years": g.size()})
    for t in targets:
        out[f"label_{t}_observed"] = g[f"label_{t}"].count()
        out[f"label_{t}_positive"] = g[f"label_{t}"].sum(min_count=1).fillna(0).astype("int64")
        out[f"known_{t}"] = g[f"known_{t}"].sum().astype("int64")
    return out.reset_index()


def feature_prevalence(
    panel: pd.DataFrame, catalogue: pd.DataFrame, names: list[str] | None = None
) -> pd.DataFrame:
    """Per binary feature and fiscal year: rows known, rows with 1, prevalence among known."""
    if names is None:
        sel = (catalogue["role"] == "feature") & (catalogue["type"] == "binary")
        names = catalogue.loc[sel, "name"].tolist()
    g = panel.groupby("fiscal_year")
    known = g[names].count()
    positive = g[names].sum(min_count=0)
    long = pd.DataFrame(
        {
            "known": known.stack(),
            "positive": positive.stack().astype("int64"),
        }
    ).reset_index()
    long.columns = ["fiscal_year", "name", "known", "positive"]
    long["prevalence"] = long["positive"] / long["known"].where(long["known"] > 0)
    return long[["name", "fiscal_year", "known", "positive", "prevalence"]]


def prevalence_wide(prevalence: pd.DataFrame, catalogue: pd.DataFrame) -> pd.DataFrame:
    """One row per feature, a count column and a rate column per fiscal year (for show_table:
    counts ``n_<fy>``, rates ``p_<fy>`` suppressed with their counts)."""
    labels = catalogue.set_index("name")["label_ja"]
    wide = prevalence.pivot(index="name", columns="fiscal_year", values=["positive", "prevalence"])
    out = pd.DataFrame(index=wide.index)
    for fy in sorted(prevalence["fiscal_year"].unique()):
        out[f"n_{fy}"] = wide[("positive", fy)].astype("int64")
        out[f"p_{fy}"] = wide[("prevalence", fy)]
    out.insert(0, "label_ja", labels.reindex(out.index))
    return out.reset_index()


def size_table(panel: pd.DataFrame, targets: list[str]) -> Table:
    """`panel_size_table` as the report shows it."""
    size = panel_size_table(panel, targets)
    return Table(
        size,
        "年度別の行数・目的変数（rows, labels and known cases per fiscal year）",
        [c for c in size.columns if c != "fiscal_year"],
    )


def prevalence_table(prevalence: pd.DataFrame, catalogue: pd.DataFrame) -> Table:
    """`prevalence_wide` as the report shows it: each share hidden with its count."""
    wide = prevalence_wide(prevalence, catalogue)
    years = sorted(prevalence["fiscal_year"].unique())
    return Table(
        wide,
        "二値特徴量の該当数と割合（binary features: count and share）",
        [f"n_{y}" for y in years],
        {f"p_{y}": f"n_{y}" for y in years},
        max_rows=len(wide),
    )


def plot_item_prevalence(
    prevalence: pd.DataFrame, names: list[str], rules: Rules, ax: Axes | None = None
) -> Axes:
    """Prevalence over fiscal years, one line per item; points resting on 1..T positives are
    not drawn (small-cell suppression). Returns the Axes."""
    ax = axes(ax, (8, 4.5))
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D"]
    for i, name in enumerate(names):
        part = prevalence[prevalence["name"] == name].sort_values("fiscal_year")
        rate = part["prevalence"].where(~small_mask(part["positive"], rules))
        ax.plot(
            part["fiscal_year"],
            rate,
            marker=markers[(i // 10) % 4],
            linestyle=styles[(i // 10) % 4],
            color=f"C{i % 10}",
            label=name,
        )
    ax.set_xlabel(label("年度", "fiscal year"))
    ax.set_ylabel(label("該当割合", "prevalence"))
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def plot_correlation(
    corr: pd.DataFrame,
    ax: Axes | None = None,
    title: str = "項目間の相関（item correlations）",
    labels: dict[str, str] | None = None,
) -> Axes:
    """Heat map of a correlation matrix with values written in the cells. Returns the Axes.

    ``labels`` maps feature names to the Japanese labels a reviewer reads (catalogue label_ja).
    """
    if labels:
        corr = corr.rename(index=labels, columns=labels)
    ax = axes(ax, (8, 7))
    values = corr.to_numpy(dtype="float64")
    im = ax.imshow(values, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(corr.columns)), corr.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(len(corr.index)), corr.index, fontsize=7)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                ax.text(
                    j,
                    i,
                    f"{values[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if abs(values[i, j]) > 0.6 else "black",
                )
    ax.figure.colorbar(im, ax=ax, shrink=0.7)
    ax.set_title(title)
    return ax


def redundant_pairs_table(pairs: pd.DataFrame) -> Table:
    """The redundant item pairs, or one row saying there is none at this threshold."""
    if not len(pairs):
        pairs = pd.DataFrame({"result": ["冗長な組なし（no redundant pair at this threshold）"]})
    return Table(pairs, "冗長な項目の組（redundant item pairs）")


def leakage_table(leakage: dict) -> Table:
    """The leakage check (``leakage_check.json``) as a two-column table for report 02."""
    rows = {
        "年度（fiscal year checked）": str(leakage["fiscal_year"]),
        "基準日（as-of date）": leakage["as_of"],
        "比較した特徴量（features compared）": str(leakage["features_compared"]),
        "変化した特徴量（features changed）": ", ".join(leakage["features_changed"])
        or "なし（none）",
        "事後テーブル（post-outcome tables）": ", ".join(leakage["post_outcome_tables"]),
        "事後テーブル由来の特徴量（features from them）": ", ".join(
            leakage["features_from_post_outcome_tables"]
        )
        or "なし（none）",
        "結果（result）": "合格（passed）" if leakage["passed"] else "不合格（FAILED）",
    }
    frame = pd.DataFrame({"項目（item）": list(rows), "値（value）": list(rows.values())})
    return Table(frame, "リーク検査の結果（leakage check）")
