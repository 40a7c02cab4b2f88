"""One look for every report's plots, with a Japanese font that has the glyphs.

Labels are Japanese with English in brackets (``label("年度", "fiscal year")``). Every plot
function in the package gets its Axes from `axes` (``ax=None``: a new figure) and returns it,
so notebooks can compose figures. Count plots take the disclosure `Rules`: a count of 1..T is
a grey hatched bar of height T+1 with no value ("somewhere below 10"), explained in the legend,
so a figure never shows what the suppressed table hides. Colour means one thing: the series;
grey hatching always and only means "hidden".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import matplotlib
import matplotlib.dates
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from helpers import MimamoriError
from helpers.reports.disclosure import Rules, visible_counts

PALETTE = ["#2f6690", "#d9822b", "#3a7d44", "#9a348e", "#16a085", "#8c6d31", "#5b5ea6"]
HIDDEN_COLOUR = "#9a9a9a"  # grey: hidden counts, nothing else
ASSESSMENT_ORDER = ("poor", "fair", "good")
ASSESSMENT_LABELS = {"good": "良い（good）", "fair": "普通（fair）", "poor": "悪い（poor）"}
ASSESSMENT_COLOURS = {"good": "#3a7d44", "fair": "#d9a62b", "poor": "#c0392b"}
CJK_SAMPLE = "年度相談件数良い普通悪いヤングケアラー児童虐待"

STYLE: dict[str, Any] = {
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
    matplotlib.rcParams.update(cast(Any, STYLE))
    matplotlib.rcParams["font.family"] = name
    matplotlib.rcParams["axes.prop_cycle"] = cycler(color=PALETTE)
    return name


def axes(ax: Axes | None, figsize: tuple[float, float] | None = None) -> Axes:
    """The Axes to draw on: ``ax`` itself, or a new figure's (of ``figsize``)."""
    if ax is not None:
        return ax
    _, new = plt.subplots(figsize=figsize)
    return new


def hidden_legend_handle(rules: Rules) -> Patch:
    """Legend entry for hatched bars: what they stand for, with no value."""
    t = rules.threshold
    return Patch(
        facecolor="white",
        edgecolor=HIDDEN_COLOUR,
        hatch="//",
        label=f"1〜{t}（値は非表示）（1–{t}, value hidden）",
    )


def hidden_bars(
    ax: Axes, positions: np.ndarray, heights: np.ndarray, width: float, horizontal: bool = False
) -> None:
    """Grey hatched bars for hidden counts (heights already the band, T+1)."""
    if horizontal:
        ax.barh(positions, heights, width, facecolor="white", edgecolor=HIDDEN_COLOUR, hatch="//")
    else:
        ax.bar(positions, heights, width, facecolor="white", edgecolor=HIDDEN_COLOUR, hatch="//")


def bar_by_year(
    df: pd.DataFrame,
    year: str,
    value: str,
    rules: Rules,
    hue: str | None = None,
    ax: Axes | None = None,
    title: str = "",
    ylabel: str = label("件数", "count"),
) -> Axes:
    """Bars of ``value`` per fiscal year (grouped by ``hue`` if given); small counts hidden."""
    for col in [year, value, *([hue] if hue else [])]:
        if col not in df.columns:
            raise MimamoriError(f"bar_by_year: column {col!r} not in table")
    ax = axes(ax)
    wide = (
        df.pivot_table(index=year, columns=hue, values=value, aggfunc="sum", observed=True)
        if hue
        else df.groupby(year, observed=True)[[value]].sum()
    )
    wide = wide.sort_index()
    n_series = max(len(wide.columns), 1)
    width = 0.8 / n_series
    x = np.arange(len(wide.index))
    handles = []
    any_small = False
    for i, col in enumerate(wide.columns):
        heights, small = visible_counts(wide[col].fillna(0).to_numpy(), rules)
        pos = x - 0.4 + width * (i + 0.5)
        bars = ax.bar(
            pos[~small],
            heights[~small],
            width,
            color=PALETTE[i % len(PALETTE)],
            label=str(col) if hue else None,
        )
        handles.append(bars)
        if small.any():
            any_small = True
            hidden_bars(ax, pos[small], heights[small], width)
    ax.set_xticks(x, [f"{y}年度" if str(y).isdigit() else str(y) for y in wide.index])
    ax.set_xlabel(label("年度", "fiscal year"))
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title)
    legend = [h for h in handles if hue] + ([hidden_legend_handle(rules)] if any_small else [])
    if legend:
        ax.legend(handles=legend, title=hue, ncols=min(len(legend), 4))
    return ax


def population_pyramid(
    df: pd.DataFrame,
    age: str,
    sex: str,
    count: str,
    rules: Rules,
    ax: Axes | None = None,
    title: str = label("年齢別人口", "population by age"),
    left: str = "male",
    right: str = "female",
) -> Axes:
    """Horizontal pyramid: ``left`` sex to the left, ``right`` to the right, one bar per age."""
    for col in (age, sex, count):
        if col not in df.columns:
            raise MimamoriError(f"population_pyramid: column {col!r} not in table")
    ax = axes(ax, figsize=(6.0, 5.0))
    wide = df.pivot_table(
        index=age, columns=sex, values=count, aggfunc="sum", observed=True
    ).sort_index()
    ages = np.arange(len(wide.index))
    any_small = False
    for side, sign, colour in ((left, -1, PALETTE[0]), (right, 1, PALETTE[1])):
        values = wide[side].fillna(0).to_numpy() if side in wide.columns else np.zeros(len(ages))
        heights, small = visible_counts(values, rules)
        ax.barh(ages[~small], sign * heights[~small], color=colour, label=str(side))
        if small.any():
            any_small = True
            hidden_bars(ax, ages[small], sign * heights[small], 0.8, horizontal=True)
    ax.set_yticks(ages, [str(a) for a in wide.index])
    ax.axvline(0, color="#555555", linewidth=0.8)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{abs(v):,.0f}"))
    ax.set_xlabel(label("人数", "children"))
    ax.set_ylabel(label("年齢", "age"))
    ax.grid(axis="x")
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=[*handles, *([hidden_legend_handle(rules)] if any_small else [])])
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
        raise MimamoriError(
            f"assessment_timeline: column {assessment!r}: unknown values "
            f"{sorted(unknown)} (expected {list(ASSESSMENT_ORDER)})"
        )
    ax = axes(ax, figsize=(7.0, 2.8))
    data = records[[date, assessment]].dropna().sort_values(date)
    level = data[assessment].map({a: i for i, a in enumerate(ASSESSMENT_ORDER)})
    months = pd.to_datetime(data[date]).dt.to_period("M").dt.to_timestamp()
    ax.step(months, level, where="post", color="#999999", linewidth=1)
    ax.scatter(months, level, c=[ASSESSMENT_COLOURS[a] for a in data[assessment]], zorder=3, s=36)
    ax.set_yticks(range(len(ASSESSMENT_ORDER)), [ASSESSMENT_LABELS[a] for a in ASSESSMENT_ORDER])
    ax.set_ylim(-0.5, len(ASSESSMENT_ORDER) - 0.5)
    ax.set_xlabel(label("記録月", "record month"))
    ax.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%Y-%m"))
    ax.grid(axis="both")
    if title:
        ax.set_title(title)
    return ax
