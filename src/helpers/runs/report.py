"""What report 07 (two runs compared) shows, built from a :class:`Comparison`.

Every section is a :class:`Table` (frame, caption, count columns and the rates that hang on
them, for small-cell suppression by ``show_table``), a figure or a sentence. Figures derived
from a count of 1-9 that ``show_table`` cannot see through (precision, the Jaccard index of two
lists of known length, a difference where only one side is small) are withheld here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from helpers.runs import ledger as L
from helpers.runs.compare import VERDICT_JA, Comparison, RunData

ROLE = {"base": "基準（base）", "new": "新（new）"}
TUNING_KEYS = ("n_planned", "n_evaluated", "budget_hit")
NONE_ROW = "（違いなし no differences）"


@dataclass
class Table:
    """``show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)``."""

    frame: pd.DataFrame
    caption: str
    counts: list[str] = field(default_factory=list)
    rates: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not len(self.frame)


def _small(value: Any, cmp: Comparison) -> bool:
    """A count of 1..threshold that the report must not let a reader work out."""
    r = cmp.cfg.reports
    if not r.suppress_small_cells or value is None or pd.isna(value):
        return False
    return 0 < float(value) <= int(r.small_cell_threshold)


def _fmt(v: Any, digits: int = 3) -> str:
    return "—" if v is None or pd.isna(v) else f"{float(v):.{digits}f}"


# ----------------------------------------------------------------------------- what changed
def runs_table(cmp: Comparison) -> Table:
    rows = []
    for role, run in (("base", cmp.base), ("new", cmp.new)):
        r = run.row
        rows.append(
            {
                "役割（role）": ROLE[role],
                "実行ID（run）": run.run_id,
                "作成（created, UTC）": r["created"],
                "コード版（code）": str(r["code_version"])[:12],
                "プロファイル（profile）": r["profile"] or "-",
                "主モデル（primary model）": r["primary_model"],
                "特徴量の数（features）": len(run.features),
                "パネル（panel sha256）": r["panel_sha256"],
            }
        )
    return Table(pd.DataFrame(rows), "比較する2つの実行（the two runs）")


def settings_diff(cmp: Comparison) -> Table:
    """Every setting that differs between the runs (``section.key: base → new``)."""
    fb, fn = L.flat_config(cmp.base.row), L.flat_config(cmp.new.row)
    keys = sorted(k for k in set(fb) | set(fn) if fb.get(k) != fn.get(k))
    frame = pd.DataFrame(
        {
            "設定（setting）": keys or [NONE_ROW],
            "基準（base）": [fb.get(k, "(none)") for k in keys] or [""],
            "新（new）": [fn.get(k, "(none)") for k in keys] or [""],
        }
    )
    return Table(frame, f"設定の違い（settings that differ: {len(keys)}）")


def _labels(run: RunData) -> dict[str, str]:
    cat = run.catalogue
    if not {"name", "label_ja"} <= set(cat.columns):
        return {}
    return dict(
        zip(cat["name"].astype(str), cat["label_ja"].fillna(cat["name"]).astype(str), strict=True)
    )


def feature_diff(cmp: Comparison) -> Table:
    fb, fn = set(cmp.base.features), set(cmp.new.features)
    labels = {**_labels(cmp.base), **_labels(cmp.new)}
    rows = [
        {"特徴量（feature）": f, "説明（label）": labels.get(f, f), "変化（change）": change}
        for change, names in (("追加（added）", fn - fb), ("削除（removed）", fb - fn))
        for f in sorted(names)
    ] or [{"特徴量（feature）": NONE_ROW}]
    frame = pd.DataFrame(rows, columns=["特徴量（feature）", "説明（label）", "変化（change）"])
    frame = frame.fillna("")
    return Table(
        frame, f"特徴量の違い（features: base {len(fb)}, new {len(fn)}, in both {len(fb & fn)}）"
    )


def tuning_diff(cmp: Comparison) -> Table:
    """Chosen parameters of each model family in both runs (the tuning record's outcome)."""

    def chosen(run: RunData) -> dict[str, str]:
        tree = run.params.get("chosen") or run.metrics.get("tuning") or {}
        return L.flatten(tree) if isinstance(tree, dict) else {}

    cb, cn = chosen(cmp.base), chosen(cmp.new)
    # parameters and the tuning budget; validation precision would derive small hit counts
    keys = sorted(
        k for k in set(cb) | set(cn) if ".params." in f".{k}" or k.rsplit(".", 1)[-1] in TUNING_KEYS
    )
    frame = pd.DataFrame(
        {
            "パラメータ（parameter）": keys,
            "基準（base）": [cb.get(k, "(none)") for k in keys],
            "新（new）": [cn.get(k, "(none)") for k in keys],
            "違い（differs）": ["●" if cb.get(k) != cn.get(k) else "" for k in keys],
        }
    )
    return Table(frame, "選ばれたパラメータ（chosen parameters of each model family）")


# ------------------------------------------------------------------------------ the headline
def _identical(cmp: Comparison) -> bool:
    j = cmp.joined
    return bool(np.array_equal(j["rank_base"].to_numpy(float), j["rank_new"].to_numpy(float)))


def protect_groups(
    frame: pd.DataFrame, counts: list[str], by: str | None, cmp: Comparison
) -> pd.DataFrame:
    """Complementary suppression: as soon as one cell of a count column within a group of rows
    is 1..threshold (shown as "<10" by ``show_table``), hide (NaN, "–") the column's other
    non-zero cells in the group: the group's total is printed elsewhere (the list length k,
    the events, the child-years, a pooled row), so one shown cell would give the small one
    away."""
    out = frame.copy()
    groups = [out.index] if by is None else [g.index for _, g in out.groupby(by, sort=False)]
    for idx in groups:
        for col in counts:
            values = out.loc[idx, col]
            small = values.map(lambda v: _small(v, cmp))
            if small.any():
                out.loc[idx, col] = values.where(small | (values == 0), np.nan)
    return out


def difference_shown(hits_base: float, hits_new: float, difference: float, cmp: Comparison) -> bool:
    """Whether a difference in hits can be printed without giving a hidden count away.

    One side small and the other not: the difference plus the shown side is the small one.
    Both small: ``a - b = d`` leaves each ``threshold - |d|`` possible values, which must stay
    at least ``reports.min_feasible_values`` (as for every hidden count).
    """
    sb, sn = _small(hits_base, cmp), _small(hits_new, cmp)
    if sb != sn:
        return False
    if sb and sn:
        r = cmp.cfg.reports
        feasible = int(getattr(r, "min_feasible_values", 5))
        return int(r.small_cell_threshold) - abs(round(difference)) >= feasible
    return True


def pooled_difference_shown(cmp: Comparison) -> bool:
    """The pooled difference minus the shown years' would give a withheld year's away."""
    years = cmp.paired.per_year.to_dict(orient="records")
    p = cmp.paired.pooled
    return all(
        difference_shown(r["hits_base"], r["hits_new"], r["difference"], cmp) for r in years
    ) and difference_shown(p["hits_base"], p["hits_new"], p["difference"], cmp)


def _diff_cells(row: dict[str, Any], cmp: Comparison, pooled: bool) -> dict[str, Any]:
    hidden = not (
        pooled_difference_shown(cmp)
        if pooled
        else difference_shown(row["hits_base"], row["hits_new"], row["difference"], cmp)
    )
    return {
        "差（difference, new − base）": np.nan if hidden else row["difference"],
        "95% CI 下限（low）": np.nan if hidden else row["ci_low"],
        "95% CI 上限（high）": np.nan if hidden else row["ci_high"],
    }


def headline_table(cmp: Comparison) -> Table:
    """Hits in the top k of each run on the same child-years, the paired difference and CI,
    per fiscal year and pooled."""
    records = cmp.paired.per_year.to_dict(orient="records")
    if len(records) > 1:
        records.append({"fiscal_year": "合計（pooled）", **cmp.paired.pooled})
    rows = []
    for r in records:
        year = r["fiscal_year"]
        rows.append(
            {
                "年度（FY）": year if isinstance(year, str) else f"FY{year}",
                "児童年（child-years）": r["n"],
                "事例（events）": r["events"],
                "k": int(r["k"]),
                "的中 基準（hits base）": r["hits_base"],
                "的中 新（hits new）": r["hits_new"],
                "precision 基準（base）": r["precision_base"],
                "precision 新（new）": r["precision_new"],
                **_diff_cells(r, cmp, pooled=isinstance(year, str)),
            }
        )
    counts = [
        "児童年（child-years）",
        "事例（events）",
        "的中 基準（hits base）",
        "的中 新（hits new）",
    ]
    frame = protect_groups(
        pd.DataFrame(rows).astype({c: float for c in counts}), counts, None, cmp
    )  # the pooled row is the sum of the years
    for hits, prec in (
        ("的中 基準（hits base）", "precision 基準（base）"),
        ("的中 新（hits new）", "precision 新（new）"),
    ):
        frame[prec] = frame[prec].where(
            frame[hits].notna() & ~frame[hits].map(lambda v: _small(v, cmp)).astype(bool)
        )
    return Table(
        frame,
        f"上位{cmp.k}人の的中数：同じ児童年での対応のある比較（hits in the top "
        f"{cmp.k} on the same child-years, paired bootstrap "
        f"{int(cmp.paired.pooled['n_boot'])} replicates）",
        counts=counts,
        rates={
            "precision 基準（base）": "的中 基準（hits base）",
            "precision 新（new）": "的中 新（hits new）",
        },
    )


def headline_text(cmp: Comparison) -> str:
    p = cmp.paired.pooled
    scope = _years_text(cmp) if len(cmp.paired.per_year) == 1 else f"{_years_text(cmp)} pooled"
    if _identical(cmp):
        diff = "差 0（2つの実行は全ての児童年を同じ順に並べる identical rankings）"
    elif not pooled_difference_shown(cmp):
        diff = "差は秘匿（difference withheld: it would reveal a count under 10）"
    else:
        diff = f"差 {p['difference']:+.2f}（95% CI {p['ci_low']:+.2f} 〜 {p['ci_high']:+.2f}）"
    return (
        f"{cmp.target}: {cmp.new.run_id} と {cmp.base.run_id} の比較、上位{cmp.k}人の的中数の"
        f"{diff}、{scope} → {VERDICT_JA[cmp.verdict]}"
    )


def verdict_text(cmp: Comparison) -> str:
    p = cmp.paired.pooled
    pct = int(round(100 * (1 - cmp.alpha)))
    reason = {
        "better": f"the {pct}% CI of the difference lies above 0",
        "worse": f"the {pct}% CI of the difference lies below 0",
        "no detectable difference": f"the {pct}% CI of the difference includes 0",
    }[cmp.verdict]
    interval = (
        f"[{p['ci_low']:+.2f}, {p['ci_high']:+.2f}] hits"
        if pooled_difference_shown(cmp)
        else "(interval withheld: it would reveal a count under 10)"
    )
    return (
        f"判定（verdict）: {VERDICT_JA[cmp.verdict]} — {reason} {interval}. "
        "差がないことの証明ではありません（no detectable difference is not proof of no "
        "difference: the interval says how large a difference the data cannot exclude）."
    )


def plot_difference(cmp: Comparison, ax: Any = None) -> Any:
    """Difference in hits (new − base) with its paired CI, per year and pooled."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2.8))
    t = headline_table(cmp).frame
    d = t["差（difference, new − base）"].to_numpy(float)
    lo = t["95% CI 下限（low）"].to_numpy(float)
    hi = t["95% CI 上限（high）"].to_numpy(float)
    y = np.arange(len(t))[::-1]
    ax.errorbar(d, y, xerr=[d - lo, hi - d], fmt="o", color="#1f4e79", capsize=4)
    ax.axvline(0, color="#888", lw=1, ls="--")
    ax.set_yticks(y, [str(v) for v in t["年度（FY）"]])
    ax.set_xlabel("的中数の差 new − base（difference in hits, 95% CI）")
    ax.figure.tight_layout()
    return ax


# ------------------------------------------------------------------------------ the lists
def _years_text(cmp: Comparison) -> str:
    years = [int(y) for y in cmp.paired.per_year["fiscal_year"]]
    return f"FY{years[0]}" if len(years) == 1 else f"FY{years[0]}–{years[-1]}"


def _lists(cmp: Comparison) -> list[tuple[int, pd.DataFrame, pd.DataFrame]]:
    """Per test year: the evaluated child-years of each run's top k (by rank, as staff get)."""
    eb, en = cmp.base.evaluated(), cmp.new.evaluated()
    out = []
    for year in sorted(int(y) for y in cmp.paired.per_year["fiscal_year"]):
        tb = eb[eb["fiscal_year"] == year].sort_values("rank", kind="stable").head(cmp.k)
        tn = en[en["fiscal_year"] == year].sort_values("rank", kind="stable").head(cmp.k)
        out.append((year, tb, tn))
    return out


def _movers(tb: pd.DataFrame, tn: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(entered: in the new list only, left: in the base list only)."""
    return tn[~tn["child_id"].isin(set(tb["child_id"]))], tb[
        ~tb["child_id"].isin(set(tn["child_id"]))
    ]


def overlap_table(cmp: Comparison) -> Table:
    """Per test year: who entered and left the top k, and the Jaccard index of the two lists."""
    rows = []
    for year, tb, tn in _lists(cmp):
        entered, left = _movers(tb, tn)
        both = len(set(tb["child_id"]) & set(tn["child_id"]))
        union = len(set(tb["child_id"]) | set(tn["child_id"]))
        hidden = _small(len(entered), cmp) or _small(len(left), cmp)
        rows.append(
            {
                "年度（FY）": f"FY{year}",
                "リストの長さ（list length k）": len(tn),
                "入った（entered）": len(entered),
                "うち真の事例（true cases entered）": float(entered["label"].sum()),
                "外れた（left）": len(left),
                "うち真の事例（true cases left）": float(left["label"].sum()),
                "Jaccard": np.nan if hidden or not union else both / union,
            }
        )
    counts = [
        "入った（entered）",
        "うち真の事例（true cases entered）",
        "外れた（left）",
        "うち真の事例（true cases left）",
    ]
    return Table(
        pd.DataFrame(rows),
        "上位k人リストの重なり（overlap of the two top-k lists; "
        "Jaccard withheld when fewer than 10 children changed: with k known it would "
        "give the number away）",
        counts=counts,
    )


def movers_by_reason(cmp: Comparison) -> Table:
    """Entered (by the new run's first reason code) and left (by the base run's), all years."""
    cols = ["理由（first reason code）", "入った（entered）", "外れた（left）"]
    if "reason_1" not in cmp.base.scores.columns or "reason_1" not in cmp.new.scores.columns:
        return Table(pd.DataFrame(columns=cols), "理由コードなし（no reason codes in the scores）")
    parts = [_movers(tb, tn) for _, tb, tn in _lists(cmp)]
    ent = pd.concat([e["reason_1"] for e, _ in parts]).fillna("（なし none）")
    lft = pd.concat([m["reason_1"] for _, m in parts]).fillna("（なし none）")
    frame = (
        pd.concat([ent.value_counts().rename(cols[1]), lft.value_counts().rename(cols[2])], axis=1)
        .fillna(0)
        .astype(float)
        .rename_axis(cols[0])
        .reset_index()
    )
    frame = frame.sort_values([cols[1], cols[2], cols[0]], ascending=[False, False, True])
    frame = protect_groups(frame.reset_index(drop=True), cols[1:], None, cmp)
    return Table(
        frame,
        f"リストに入った／外れた児童の第一理由（who entered and left the top k, "
        f"by first reason code, {_years_text(cmp)}; a column with a count under "
        "10 is hidden whole）",
        counts=cols[1:],
    )


# ----------------------------------------------------------------- calibration and fairness
def _calibration(run: RunData) -> dict[str, float]:
    ev = run.evaluated()
    p = ev["probability"].to_numpy(float) if "probability" in ev else np.full(len(ev), np.nan)
    y = ev["label"].to_numpy(float)
    ok = ~np.isnan(p)
    if not ok.any():
        return {"oe": np.nan, "brier": np.nan, "mean_p": np.nan}
    return {
        "oe": float(y[ok].sum() / p[ok].sum()) if p[ok].sum() else np.nan,
        "brier": float(np.mean((p[ok] - y[ok]) ** 2)),
        "mean_p": float(p[ok].mean()),
    }


def _stage_oe(run: RunData) -> str:
    cal = run.metrics.get("calibration") or {}
    if "oe_ci_low" not in cal:
        return "—"
    flag = "" if cal.get("ok", True) else "（要確認 check）"
    return (
        f"{_fmt(cal.get('oe'), 2)} [{_fmt(cal.get('oe_ci_low'), 2)}, "
        f"{_fmt(cal.get('oe_ci_high'), 2)}]{flag}"
    )


def calibration_table(cmp: Comparison) -> Table:
    """Observed/expected, Brier score and mean predicted probability of each run."""
    cb, cn = _calibration(cmp.base), _calibration(cmp.new)
    if _small(cmp.paired.pooled["events"], cmp):  # O/E x expected would give the count away
        cb["oe"] = cn["oe"] = np.nan
    names = {
        "oe": "観測/期待（observed / expected）",
        "brier": "Brier スコア（lower is better）",
        "mean_p": "平均予測確率（mean predicted probability）",
    }
    rows = [
        {
            "指標（measure）": label,
            "基準（base）": _fmt(cb[key], 4),
            "新（new）": _fmt(cn[key], 4),
            "変化（change）": _fmt(cn[key] - cb[key], 4),
        }
        for key, label in names.items()
    ]
    rows.append(
        {
            "指標（measure）": "O/E [95% CI]（models stage）",
            "基準（base）": _stage_oe(cmp.base),
            "新（new）": _stage_oe(cmp.new),
            "変化（change）": "",
        }
    )
    return Table(
        pd.DataFrame(rows),
        f"較正の変化（calibration change, {_years_text(cmp)}; O/E near 1 is well calibrated）",
    )


def fairness_table(cmp: Comparison) -> Table:
    """Per group: children listed and true cases found by each run (all test years)."""
    lists = _lists(cmp)
    listed_b = {(y, c) for y, tb, _ in lists for c in tb["child_id"]}
    listed_n = {(y, c) for y, _, tn in lists for c in tn["child_id"]}
    ev = cmp.new.evaluated()
    keys = list(zip(ev["fiscal_year"].astype(int), ev["child_id"], strict=True))
    sel_b = np.array([k in listed_b for k in keys], dtype=bool)
    sel_n = np.array([k in listed_n for k in keys], dtype=bool)
    y = ev["label"].to_numpy(float) == 1
    groups = [
        g
        for g in cmp.cfg.models.fairness.groups
        if g in ev.columns and g in cmp.base.scores.columns
    ]
    rows = []
    for g in groups:
        values = ev[g].astype("string").fillna("不明")
        for value in sorted(values.unique()):
            m = (values == value).to_numpy()
            rows.append(
                {
                    "属性（attribute）": g,
                    "群（group）": value,
                    "児童年（n）": int(m.sum()),
                    "事例（events）": int((m & y).sum()),
                    "選ばれた 基準（listed base）": int((m & sel_b).sum()),
                    "選ばれた 新（listed new）": int((m & sel_n).sum()),
                    "発見 基準（found base）": int((m & y & sel_b).sum()),
                    "発見 新（found new）": int((m & y & sel_n).sum()),
                }
            )
    counts = [
        "児童年（n）",
        "事例（events）",
        "選ばれた 基準（listed base）",
        "選ばれた 新（listed new）",
        "発見 基準（found base）",
        "発見 新（found new）",
    ]
    frame = pd.DataFrame(rows, columns=["属性（attribute）", "群（group）", *counts])
    frame = protect_groups(
        frame.astype({c: float for c in counts}), counts, "属性（attribute）", cmp
    )
    return Table(
        frame,
        f"公平性の変化：群ごとのリスト掲載と発見（fairness change by group, "
        f"{_years_text(cmp)}; within an attribute, a column with a count under "
        "10 is hidden whole）",
        counts=counts,
    )


def backtest_table(cmp: Comparison) -> Table | None:
    """Synthetic city only: each run's expected precision under the true probabilities (no
    outcome noise) per backtest year and pooled, from the models stage; None without it."""

    def per_year(run: RunData) -> dict[Any, float]:
        bt = run.metrics.get("backtest")
        if not isinstance(bt, dict):
            return {}
        out: dict[Any, float] = {
            int(r["test_year"]): _value(r.get("expected_precision_at_k"))
            for r in bt.get("per_year", [])
            if isinstance(r, dict)
        }
        pooled = (bt.get("pooled") or {}).get("expected_precision_at_k")
        if pooled is not None:
            out["合計（pooled）"] = _value(pooled)
        return {k: v for k, v in out.items() if not pd.isna(v)}

    pb, pn = per_year(cmp.base), per_year(cmp.new)
    keys = [k for k in pb if k in pn]
    if not keys:
        return None
    frame = pd.DataFrame(
        {
            "年度（FY）": [k if isinstance(k, str) else f"FY{k}" for k in keys],
            "期待 precision 基準（expected, base）": [pb[k] for k in keys],
            "期待 precision 新（expected, new）": [pn[k] for k in keys],
            "変化（change）": [pn[k] - pb[k] for k in keys],
        }
    )
    return Table(
        frame,
        "真の確率のもとでの期待precision（expected precision@k under the true "
        "probabilities, synthetic city only: the same lists without outcome "
        "noise; from each run's models stage）",
    )


def _value(x: Any) -> float:
    if isinstance(x, dict):
        x = x.get("value")
    return float(x) if x is not None else np.nan


def comparison_json(cmp: Comparison) -> str:
    return json.dumps(cmp.summary(), ensure_ascii=False, sort_keys=True, default=str)
