"""Display frames, headlines and plots for the review notebooks (04 list, 05 results).

Counts go to ``show_table(counts=...)`` for small-cell suppression; anything *derived* from a
small count (a confidence interval, a p-value, a ratio) could give the count back, so these
helpers hide it as well ("*") when the row holds a count of 1..threshold. ``threshold=None``
means suppression is off (an analyst's private run).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from helpers.review.stats import fisher_exact_power, normal_power, percent

HIDDEN = "*"
ARM_LABELS = {"high": "高スコア群（high score）", "low": "低スコア群（low score）"}


def _small(values: pd.Series, threshold: int | None) -> np.ndarray:
    if threshold is None:
        return np.zeros(len(values), dtype=bool)
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    return (v >= 1) & (v <= threshold)


def _ci_text(low: float, high: float) -> str:
    if any(isinstance(x, float) and math.isnan(x) for x in (low, high)):
        return "–"
    return f"{percent(low)}–{percent(high)}"


def _p_text(p: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def hide_derived(
    df: pd.DataFrame, derived: list[str], counts: list[str], threshold: int | None
) -> pd.DataFrame:
    """Replace ``derived`` cells by "*" in rows where any of ``counts`` is 1..threshold."""
    out = df.copy()
    if threshold is None or not len(out):
        return out
    small = np.zeros(len(out), dtype=bool)
    for c in counts:
        small |= _small(out[c], threshold)
    for c in derived:
        col = out[c].astype(object)
        col[small] = HIDDEN
        out[c] = col
    return out


def arm_rates_display(rates: pd.DataFrame, threshold: int | None) -> pd.DataFrame:
    """Per arm: drawn, returned, needs support, rate and 95% CI (CI hidden with a small count).

    The number not returned is left out: it is a difference of two shown counts and would show
    a small count the suppression hides elsewhere.
    """
    out = pd.DataFrame(
        {
            "群（arm）": rates["arm"].map(ARM_LABELS),
            "抽出（drawn）": rates["drawn"],
            "回答（reviewed）": rates["reviewed"],
            "要支援（needs support）": rates["positive"],
            "要支援率（rate）": rates["rate"].map(percent),
            "95%信頼区間（95% CI）": [
                _ci_text(a, b) for a, b in zip(rates["ci_low"], rates["ci_high"], strict=True)
            ],
        }
    )
    return hide_derived(
        out, ["95%信頼区間（95% CI）"], ["要支援（needs support）", "回答（reviewed）"], threshold
    )


ARM_COUNTS = ["抽出（drawn）", "回答（reviewed）", "要支援（needs support）"]
ARM_RATES = {"要支援率（rate）": "要支援（needs support）"}


def rounds_display(rounds: pd.DataFrame, threshold: int | None) -> pd.DataFrame:
    """The two-year table of the reference, extended by this round."""
    out = pd.DataFrame(
        {
            "回（round）": rounds["round"],
            "高：確認数（high reviewed）": rounds["high_reviewed"],
            "高：要支援（high positive）": rounds["high_positive"],
            "高：要支援率（high rate）": rounds["high_rate"].map(percent),
            "高：95%CI": [
                _ci_text(a, b)
                for a, b in zip(rounds["high_ci_low"], rounds["high_ci_high"], strict=True)
            ],
            "低：確認数（low reviewed）": rounds["low_reviewed"],
            "低：要支援（low positive）": rounds["low_positive"],
            "低：要支援率（low rate）": rounds["low_rate"].map(percent),
            "低：95%CI": [
                _ci_text(a, b)
                for a, b in zip(rounds["low_ci_low"], rounds["low_ci_high"], strict=True)
            ],
            "Fisher p": rounds["fisher_p"].map(_p_text),
            "初回比（high rate vs first round）": rounds["high_ratio_vs_first"].map(
                lambda r: "–" if pd.isna(r) else f"{r:.1f}倍"
            ),
        }
    )
    out = hide_derived(
        out,
        ["高：95%CI", "Fisher p", "初回比（high rate vs first round）"],
        ["高：要支援（high positive）", "高：確認数（high reviewed）"],
        threshold,
    )
    out = hide_derived(
        out,
        ["低：95%CI", "Fisher p"],
        ["低：要支援（low positive）", "低：確認数（low reviewed）"],
        threshold,
    )
    # the ratio to the first round also uses the first round's count
    if (
        threshold is not None
        and len(rounds)
        and _small(rounds["high_positive"].iloc[:1], threshold)[0]
    ):
        out["初回比（high rate vs first round）"] = HIDDEN
    return out


ROUND_COUNTS = [
    "高：確認数（high reviewed）",
    "高：要支援（high positive）",
    "低：確認数（low reviewed）",
    "低：要支援（low positive）",
]
ROUND_RATES = {
    "高：要支援率（high rate）": "高：要支援（high positive）",
    "低：要支援率（low rate）": "低：要支援（low positive）",
}


def prevalence_display(prevalence: pd.DataFrame, threshold: int | None) -> pd.DataFrame:
    """Item prevalence among needs-support vs not, with ratio and difference."""
    out = pd.DataFrame(
        {
            "項目（item）": prevalence["label"],
            "要支援：該当（support, with item）": prevalence["support_with_item"],
            "要支援：人数（support, known）": prevalence["support_known"],
            "要支援：該当率": prevalence["prevalence_support"].map(percent),
            "非該当：該当（others, with item）": prevalence["other_with_item"],
            "非該当：人数（others, known）": prevalence["other_known"],
            "非該当：該当率": prevalence["prevalence_other"].map(percent),
            "比（ratio）": prevalence["ratio"].map(lambda r: "–" if pd.isna(r) else f"{r:.2f}倍"),
            "差（difference）": prevalence["difference"].map(
                lambda d: "–" if pd.isna(d) else f"{d * 100:+.1f}pt"
            ),
        }
    )
    return hide_derived(out, ["比（ratio）", "差（difference）"], PREVALENCE_COUNTS, threshold)


PREVALENCE_COUNTS = [
    "要支援：該当（support, with item）",
    "要支援：人数（support, known）",
    "非該当：該当（others, with item）",
    "非該当：人数（others, known）",
]
PREVALENCE_RATES = {
    "要支援：該当率": "要支援：該当（support, with item）",
    "非該当：該当率": "非該当：該当（others, with item）",
}


SIMULATED = "模擬（simulated）"


def simulated_label(text: str, simulated: bool) -> str:
    """``text`` marked as simulated (the synthetic city's verdicts come from a simulator)."""
    return f"{SIMULATED}：{text}" if simulated else text


def results_headline(
    rates: pd.DataFrame, fisher_p: float, threshold: int | None, simulated: bool = False
) -> str:
    """One sentence for the index page; rates of small counts are not quoted; on the
    synthetic city it says the verdicts are simulated."""
    return simulated_label(_results_sentence(rates, fisher_p, threshold), simulated)


def _results_sentence(rates: pd.DataFrame, fisher_p: float, threshold: int | None) -> str:
    r = rates.set_index("arm")
    parts = []
    for arm, name in (("high", "高スコア群"), ("low", "低スコア群")):
        n, x = int(r.loc[arm, "reviewed"]), int(r.loc[arm, "positive"])
        if threshold is not None and (1 <= x <= threshold or 1 <= n <= threshold):
            parts.append(f"{name} 要支援率は少数のため非表示（small count）")
        else:
            parts.append(
                f"{name} 要支援率 {percent(r.loc[arm, 'rate'])}"
                f"（95%CI {_ci_text(r.loc[arm, 'ci_low'], r.loc[arm, 'ci_high'])}, 確認 {n:,} 人）"
            )
    small_any = threshold is not None and any(
        1 <= int(r.loc[a, c]) <= threshold
        for a in ("high", "low")
        for c in ("reviewed", "positive")
    )
    p = "Fisher p 非表示" if small_any else f"Fisher p = {_p_text(fisher_p)}"
    return "；".join(parts) + f"；{p}"


def list_headline(summary: dict) -> str:
    return (
        f"FY{summary['scoring_year']}：対象 {summary['eligible']:,} 人から職員の確認可能数 "
        f"{summary['capacity']:,} 人のリストを作成；確認標本は高スコア {summary['n_high']} ："
        f"低スコア {summary['n_low']}（盲検）"
    )


# ------------------------------------------------------------------------------ plots
def plot_hit_rates(
    rounds: pd.DataFrame,
    threshold: int | None = None,
    ax: Axes | None = None,
    simulated: bool = False,
) -> Axes:
    """Needs-support rate per round and arm with 95% CIs; points from small counts are not drawn.
    ``simulated``: this round's verdicts come from the simulator (title says so)."""
    from helpers.reports.plotting import axes, label

    ax = axes(ax, (7, 3.6))
    x = np.arange(len(rounds))
    hidden_any = False
    top = 0.0
    for i, (arm, colour) in enumerate((("high", "#c0392b"), ("low", "#2f6690"))):
        hide = _small(rounds[f"{arm}_positive"], threshold) | _small(
            rounds[f"{arm}_reviewed"], threshold
        )
        hidden_any |= bool(hide.any())
        show = ~hide & rounds[f"{arm}_rate"].notna().to_numpy()
        rate = rounds[f"{arm}_rate"].to_numpy(dtype=float)
        err = np.vstack(
            [
                rate - rounds[f"{arm}_ci_low"].to_numpy(dtype=float),
                rounds[f"{arm}_ci_high"].to_numpy(dtype=float) - rate,
            ]
        )
        pos = x + (i - 0.5) * 0.2
        if show.any():
            top = max(top, float(np.nanmax(rounds[f"{arm}_ci_high"].to_numpy(dtype=float)[show])))
        ax.errorbar(
            pos[show],
            rate[show] * 100,
            yerr=np.clip(err[:, show], 0, None) * 100,  # rounding can put a bound past the rate
            fmt="o",
            color=colour,
            capsize=4,
            label=ARM_LABELS[arm],
        )
    ax.set_xticks(x, [str(r) for r in rounds["round"]])
    if simulated:
        ax.set_title(f"今回の回は{SIMULATED}（this round's verdicts are simulated）", fontsize=10)
    ax.set_ylabel(label("要支援率 %", "needs-support rate %"))
    ax.set_xlabel(label("確認の回", "review round"))
    ax.set_ylim(0, min(100.0, top * 110) if top > 0 else 100.0)
    ax.legend()
    if hidden_any:
        ax.annotate(
            f"少数（1〜{threshold}人）の点は非表示（points from counts 1–{threshold} not drawn）",
            xy=(1, 1.01),
            xycoords="axes fraction",
            ha="right",
            fontsize=8,
        )
    return ax


def plot_power_curve(
    p_low: float,
    n_high: int,
    n_low: int,
    alpha: float = 0.05,
    target_power: float = 0.8,
    ax: Axes | None = None,
) -> Axes:
    """Power of the planned sample against the true high-arm rate (normal approx. and exact Fisher)."""
    from helpers.reports.plotting import axes, label

    ax = axes(ax, (7, 3.6))
    grid = np.linspace(min(p_low + 0.01, 0.99), min(p_low + 0.6, 0.99), 30)
    ax.plot(
        grid * 100,
        [normal_power(p, p_low, n_high, n_low, alpha) for p in grid],
        label=label("正規近似", "normal approximation"),
    )
    ax.plot(
        grid * 100,
        [fisher_exact_power(p, p_low, n_high, n_low, alpha) for p in grid],
        label=label("Fisher正確検定", "Fisher exact"),
        linestyle="--",
    )
    ax.axhline(target_power, color="#7f8c8d", linewidth=0.8)
    ax.set_ylim(0, 1)
    ax.set_xlabel(label("高スコア群の真の要支援率 %", "true high-arm rate %"))
    ax.set_ylabel(label("検出力", "power"))
    ax.set_title(f"高 {n_high} 人・低 {n_low} 人、低スコア群 {percent(p_low)}")
    ax.legend()
    return ax
