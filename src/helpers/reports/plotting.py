"""One look for every report's plots, with a Japanese font that has the glyphs.

Labels are Japanese with English in brackets (``label("年度", "fiscal year")``). Every helper
takes ``ax=None`` and returns the Axes, so notebooks can compose figures. Count plots take a
``threshold``: counts 1..threshold are drawn as a hatched bar at the threshold height marked
"<10", so a figure never shows what the suppressed table hides.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.dates
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from helpers import MimamoriError

PALETTE = ["#2f6690", "#d9822b", "#3a7d44", "#9a348e", "#c0392b", "#7f8c8d", "#16a085"]
ASSESSMENT_ORDER = ("poor", "fair", "good")
ASSESSMENT_LABELS = {"good": "良い（good）", "fair": "普通（fair）", "poor": "悪い（poor）"}
ASSESSMENT_COLOURS = {"good": "#3a7d44", "fair": "#d9a62b", "poor": "#c0392b"}
CJK_SAMPLE = "年度相談件数良い普通悪いヤングケアラー児童虐待"

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.figsize": (7.0, 3.6),
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.unicode_minus": False,  # Japanese fonts often lack U+2212
}


def label(ja: str, en: str) -> str:
    """Axis/legend label: Japanese with English in brackets."""
    return f"{ja}（{en}）"


def font_has_glyphs(font_path: str | Path, text: str = CJK_SAMPLE) -> bool:
    """True if every character of ``text`` has a glyph in the font (no tofu boxes)."""
    from matplotlib.ft2font import FT2Font

    charmap = FT2Font(str(font_path)).get_charmap()
    return all(ord(ch) in charmap for ch in text if not ch.isspace())


def use_japanese_font() -> str:
    """Register matplotlib-fontja's IPAexGothic, apply the shared style; return the font name.

    Raises MimamoriError if the font lacks Japanese glyphs (plots would show boxes).
    """
    try:
        import matplotlib_fontja
    except ImportError as exc:  # pragma: no cover - pinned dependency
        raise MimamoriError("matplotlib-fontja is not installed; run `make setup`") from exc
    matplotlib_fontja.japanize()
    font_path = Path(matplotlib_fontja.get_font_ttf_path())
    if not font_path.exists() or not font_has_glyphs(font_path):
        raise MimamoriError(f"{font_path}: font has no Japanese glyphs; run `make setup`")
    from matplotlib import font_manager

    name = font_manager.FontProperties(fname=str(font_path)).get_name()
    matplotlib.rcParams.update(STYLE)
    matplotlib.rcParams["font.family"] = name
    matplotlib.rcParams["axes.prop_cycle"] = matplotlib.cycler(color=PALETTE)
    return name


def _axes(ax: Axes | None, figsize: tuple[float, float] | None = None) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize)
    return ax


def _suppressed_heights(values: np.ndarray, threshold: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Heights to draw and a mask of bars standing for a suppressed 1..threshold count."""
    values = np.asarray(values, dtype=float)
    if threshold is None:
        return values, np.zeros(len(values), dtype=bool)
    small = (values >= 1) & (values <= threshold)
    return np.where(small, float(threshold), values), small


def bar_by_year(
    df: pd.DataFrame,
    year: str,
    value: str,
    hue: str | None = None,
    ax: Axes | None = None,
    title: str = "",
    ylabel: str = label("件数", "count"),
    threshold: int | None = None,
) -> Axes:
    """Bars of ``value`` per fiscal year (grouped by ``hue`` if given); small counts hatched."""
    for col in [year, value, *([hue] if hue else [])]:
        if col not in df.columns:
            raise MimamoriError(f"bar_by_year: column {col!r} not in table")
    ax = _axes(ax)
    wide = (df.pivot_table(index=year, columns=hue, values=value, aggfunc="sum", observed=True)
            if hue else df.groupby(year, observed=True)[[value]].sum())
    wide = wide.sort_index()
    n_series = max(len(wide.columns), 1)
    width = 0.8 / n_series
    x = np.arange(len(wide.index))
    any_small = False
    for i, col in enumerate(wide.columns):
        heights, small = _suppressed_heights(wide[col].fillna(0).to_numpy(), threshold)
        colour = PALETTE[i % len(PALETTE)]
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos[~small], heights[~small], width, color=colour,
               label=str(col) if hue else None)
        if small.any():
            any_small = True
            ax.bar(pos[small], heights[small], width, facecolor="white", edgecolor=colour,
                   hatch="//")
    ax.set_xticks(x, [f"{y}年度" if str(y).isdigit() else str(y) for y in wide.index])
    ax.set_xlabel(label("年度", "fiscal year"))
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if hue:
        ax.legend(title=hue, ncols=min(n_series, 4))
    if any_small:
        ax.annotate(f"斜線: <{threshold + 1}（hatched: fewer than {threshold + 1}）",
                    xy=(1, 1.01), xycoords="axes fraction", ha="right", fontsize=8)
    return ax


def population_pyramid(
    df: pd.DataFrame,
    age: str,
    sex: str,
    count: str,
    ax: Axes | None = None,
    title: str = label("年齢別人口", "population by age"),
    left: str = "male",
    right: str = "female",
    threshold: int | None = None,
) -> Axes:
    """Horizontal pyramid: ``left`` sex to the left, ``right`` to the right, one bar per age."""
    for col in (age, sex, count):
        if col not in df.columns:
            raise MimamoriError(f"population_pyramid: column {col!r} not in table")
    ax = _axes(ax, figsize=(6.0, 5.0))
    wide = df.pivot_table(index=age, columns=sex, values=count, aggfunc="sum",
                          observed=True).sort_index()
    ages = np.arange(len(wide.index))
    for side, sign, colour in ((left, -1, PALETTE[0]), (right, 1, PALETTE[1])):
        values = wide[side].fillna(0).to_numpy() if side in wide.columns else np.zeros(len(ages))
        heights, small = _suppressed_heights(values, threshold)
        ax.barh(ages[~small], sign * heights[~small], color=colour, label=str(side))
        if small.any():
            ax.barh(ages[small], sign * heights[small], facecolor="white", edgecolor=colour,
                    hatch="//")
    ax.set_yticks(ages, [str(a) for a in wide.index])
    ax.axvline(0, color="#555555", linewidth=0.8)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{abs(v):,.0f}"))
    ax.set_xlabel(label("人数", "children"))
    ax.set_ylabel(label("年齢", "age"))
    ax.grid(axis="x")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def assessment_timeline(
    records: pd.DataFrame,
    date: str = "record_date",
    assessment: str = "assessment",
    ax: Axes | None = None,
    title: str = label("経過評価の推移", "progress assessments over time"),
) -> Axes:
    """Step plot of one child's assessments (悪い < 普通 < 良い) by month."""
    for col in (date, assessment):
        if col not in records.columns:
            raise MimamoriError(f"assessment_timeline: column {col!r} not in table")
    unknown = set(records[assessment].dropna()) - set(ASSESSMENT_ORDER)
    if unknown:
        raise MimamoriError(f"assessment_timeline: column {assessment!r}: unknown values "
                            f"{sorted(unknown)} (expected {list(ASSESSMENT_ORDER)})")
    ax = _axes(ax, figsize=(7.0, 2.8))
    data = records[[date, assessment]].dropna().sort_values(date)
    level = data[assessment].map({a: i for i, a in enumerate(ASSESSMENT_ORDER)})
    months = pd.to_datetime(data[date]).dt.to_period("M").dt.to_timestamp()
    ax.step(months, level, where="post", color="#999999", linewidth=1)
    ax.scatter(months, level, c=[ASSESSMENT_COLOURS[a] for a in data[assessment]], zorder=3,
               s=36)
    ax.set_yticks(range(len(ASSESSMENT_ORDER)),
                  [ASSESSMENT_LABELS[a] for a in ASSESSMENT_ORDER])
    ax.set_ylim(-0.5, len(ASSESSMENT_ORDER) - 0.5)
    ax.set_xlabel(label("記録月", "record month"))
    ax.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%Y-%m"))
    ax.grid(axis="both")
    if title:
        ax.set_title(title)
    return ax
