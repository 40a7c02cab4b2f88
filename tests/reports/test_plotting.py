"""Plot look: Japanese font with real glyphs, helpers return Axes, small counts hidden."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from helpers import MimamoriError  # noqa: E402
from helpers.reports.plotting import (  # noqa: E402
    assessment_timeline,
    bar_by_year,
    font_has_glyphs,
    label,
    population_pyramid,
    use_japanese_font,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_japanese_font_has_cjk_glyphs():
    name = use_japanese_font()
    assert matplotlib.rcParams["font.family"] == [name]
    path = font_manager.findfont(font_manager.FontProperties(family=name), fallback_to_default=False)
    assert font_has_glyphs(path)
    # the check can fail: matplotlib's bundled DejaVu Sans has no kanji
    dejavu = font_manager.findfont("DejaVu Sans")
    assert not font_has_glyphs(dejavu)


def test_japanese_text_renders_without_missing_glyph_warnings():
    use_japanese_font()
    fig, ax = plt.subplots()
    ax.set_title(label("経過評価の推移", "progress") + "ヤングケアラー")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.canvas.draw()
    assert not [w for w in caught if "missing from" in str(w.message).lower()]


def test_bar_by_year_returns_axes_and_hides_small_counts():
    use_japanese_font()
    df = pd.DataFrame({"year": [2021, 2022, 2023], "n": [3, 0, 25]})
    ax = bar_by_year(df, "year", "n", threshold=9)
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == [0, 9, 25]  # the 3 is drawn at the threshold, hatched
    assert any(p.get_hatch() == "//" for p in ax.patches)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2021年度", "2022年度", "2023年度"]
    _, given_ax = plt.subplots()
    assert bar_by_year(df, "year", "n", ax=given_ax) is given_ax


def test_bar_by_year_with_hue_and_bad_column():
    df = pd.DataFrame({"year": [2022, 2022, 2023], "g": ["a", "b", "a"], "n": [10, 20, 30]})
    ax = bar_by_year(df, "year", "n", hue="g")
    assert len(ax.patches) == 4
    with pytest.raises(MimamoriError, match="'zz'"):
        bar_by_year(df, "year", "zz")


def test_pyramid_and_timeline_return_axes():
    use_japanese_font()
    pop = pd.DataFrame({"age": [0, 0, 1, 1], "sex": ["male", "female"] * 2, "n": [40, 38, 5, 41]})
    ax = population_pyramid(pop, "age", "sex", "n", threshold=9)
    assert ax.get_xlabel().startswith("人数")
    widths = sorted(abs(p.get_width()) for p in ax.patches)
    assert 5 not in widths and 9 in widths
    rec = pd.DataFrame({"record_date": pd.to_datetime(["2022-04-01", "2022-06-01"]),
                        "assessment": ["poor", "good"]})
    _, ax2 = plt.subplots()
    assert assessment_timeline(rec, ax=ax2) is ax2
    with pytest.raises(MimamoriError, match="unknown values"):
        assessment_timeline(rec.assign(assessment=["poor", "great"]))
