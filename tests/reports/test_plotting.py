"""Plot look: Japanese font with real glyphs, helpers return Axes, small counts hidden."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from helpers import MimamoriError  # noqa: E402
from helpers.reports.disclosure import Rules  # noqa: E402
from helpers.reports.plotting import (  # noqa: E402
    assessment_timeline,
    bar_by_year,
    font_has_glyphs,
    label,
    population_pyramid,
    use_japanese_font,
)

R = Rules(9)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_japanese_font_has_cjk_glyphs():
    name = use_japanese_font()
    assert matplotlib.rcParams["font.family"] == [name]
    path = font_manager.findfont(
        font_manager.FontProperties(family=name), fallback_to_default=False
    )
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


def _bars(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_bar_by_year_draws_small_counts_as_grey_hatched_bands_without_value():
    use_japanese_font()
    df = pd.DataFrame({"year": [2021, 2022, 2023], "n": [3, 0, 25]})
    ax = bar_by_year(df, "year", "n", R, title="相談件数")
    bars = _bars(ax)
    assert sorted(b.get_height() for b in bars) == [0, 10, 25]  # the 3: a band up to 10
    hatched = [b for b in bars if b.get_hatch() == "//"]
    assert len(hatched) == 1 and hatched[0].get_height() == 10
    assert hatched[0].get_edgecolor()[:3] == pytest.approx((0x9A / 255,) * 3)
    assert not ax.texts  # no value written on any bar
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2021年度", "2022年度", "2023年度"]
    assert ax.get_title() == "相談件数" and ax.get_xlabel().startswith("年度")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "1〜9（値は非表示）（1–9, value hidden）"
    ]
    _, given_ax = plt.subplots()
    assert bar_by_year(df, "year", "n", R, ax=given_ax) is given_ax


def test_bar_by_year_with_hue_and_suppression_off_and_bad_column():
    df = pd.DataFrame({"year": [2022, 2022, 2023], "g": ["a", "b", "a"], "n": [10, 20, 30]})
    ax = bar_by_year(df, "year", "n", R, hue="g")
    assert len(_bars(ax)) == 4  # 2 years x 2 groups (b in 2023 is a zero bar)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    off = bar_by_year(
        pd.DataFrame({"year": [2023], "n": [3]}), "year", "n", Rules(9, enabled=False)
    )
    assert [b.get_height() for b in _bars(off)] == [3] and off.get_legend() is None
    with pytest.raises(MimamoriError, match="'zz'"):
        bar_by_year(df, "year", "zz", R)


def test_pyramid_hides_small_bars_and_timeline_marks_each_record():
    use_japanese_font()
    pop = pd.DataFrame({"age": [0, 0, 1, 1], "sex": ["male", "female"] * 2, "n": [40, 38, 5, 41]})
    ax = population_pyramid(pop, "age", "sex", "n", R)
    assert ax.get_xlabel().startswith("人数") and ax.get_ylabel().startswith("年齢")
    widths = sorted(abs(b.get_width()) for b in _bars(ax))
    assert widths == [10, 38, 40, 41]  # 5 drawn as the band, never as 5
    assert sum(b.get_hatch() == "//" for b in _bars(ax)) == 1
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["male", "female", "1〜9（値は非表示）（1–9, value hidden）"]
    rec = pd.DataFrame(
        {
            "record_date": pd.to_datetime(["2022-04-01", "2022-06-01"]),
            "assessment": ["poor", "good"],
        }
    )
    _, ax2 = plt.subplots()
    assert assessment_timeline(rec, ax=ax2) is ax2
    assert len(ax2.collections[0].get_offsets()) == 2  # one point per record
    assert [t.get_text() for t in ax2.get_yticklabels()] == [
        "悪い（poor）",
        "普通（fair）",
        "良い（good）",
    ]
    with pytest.raises(MimamoriError, match="unknown values"):
        assessment_timeline(rec.assign(assessment=["poor", "great"]))


def test_every_plot_helper_gets_its_axes_from_one_place():
    import inspect

    from helpers.models import evaluation, explain
    from helpers.panel import report as panel_report
    from helpers.reports import overview, plotting
    from helpers.review import report as review_report

    modules = [plotting, overview, panel_report, evaluation, explain, review_report]
    plots = [
        f
        for m in modules
        for name, f in vars(m).items()
        if name.startswith(("plot_", "bar_", "population_", "assessment_"))
        and inspect.isfunction(f)
        and f.__module__ == m.__name__
    ]
    with_ax = [f for f in plots if "ax" in inspect.signature(f).parameters]
    assert len(plots) >= 19 and len(with_ax) >= 18
    for f in with_ax:  # one Axes helper, no private copies
        src = inspect.getsource(f)
        assert "axes(ax" in src and "plt.subplots(" not in src, f.__qualname__
